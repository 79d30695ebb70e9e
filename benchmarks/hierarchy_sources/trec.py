"""TREC question classification as a two-level hierarchy (6 coarse, 50 fine classes).

Task 0 is the coarse class (ABBR, DESC, ENTY, HUM, LOC, NUM), task 1 the fine class
(``ABBR:abb`` ... ``NUM:weight``, the 50 classes of Li & Roth 2002, sorted).

Sources:

* coarse (task 0): the 68 WRENCH TREC labeling functions. Their stored votes are joined to the
  TREC questions by normalised text; WRENCH's class order (``label.json``: DESC, ENTY, HUM,
  ABBR, LOC, NUM) is mapped to the order above. Questions that do not join get the votes of
  the same 68 regular expressions re-applied from WRENCH's ``readme.txt`` (on the joined rows
  the re-applied votes equal the stored ones; :func:`load_trec` reports both rates).
* fine (task 1): :data:`FINE_SOURCES`, written for this benchmark as a question-classification
  expert would: question-word regexes ("how many" -> NUM:count, "why" -> DESC:reason) and
  head-noun dictionaries ("what <...> river" -> LOC:other). All are unipolar (one fine class
  or abstain) and were written and checked on the training questions only.

A fine vote implies its coarse class; it is stored only in task 1 (the multi-task model derives
the implication from the hierarchy). ``imply_coarse=True`` also writes the implied coarse vote
into task 0 for per-task baselines.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import ABSTAIN, PatternSource, apply_sources, default_data_dir, imply_parent_votes

COARSE = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
FINE = (
    "ABBR:abb", "ABBR:exp",
    "DESC:def", "DESC:desc", "DESC:manner", "DESC:reason",
    "ENTY:animal", "ENTY:body", "ENTY:color", "ENTY:cremat", "ENTY:currency", "ENTY:dismed",
    "ENTY:event", "ENTY:food", "ENTY:instru", "ENTY:lang", "ENTY:letter", "ENTY:other",
    "ENTY:plant", "ENTY:product", "ENTY:religion", "ENTY:sport", "ENTY:substance",
    "ENTY:symbol", "ENTY:techmeth", "ENTY:termeq", "ENTY:veh", "ENTY:word",
    "HUM:desc", "HUM:gr", "HUM:ind", "HUM:title",
    "LOC:city", "LOC:country", "LOC:mount", "LOC:other", "LOC:state",
    "NUM:code", "NUM:count", "NUM:date", "NUM:dist", "NUM:money", "NUM:ord", "NUM:other",
    "NUM:perc", "NUM:period", "NUM:speed", "NUM:temp", "NUM:volsize", "NUM:weight",
)
FINE_TO_COARSE = np.array([COARSE.index(f.split(":")[0]) for f in FINE], dtype=np.int64)
WRENCH_LF_CLASS = {"ABBREVIATION": "ABBR", "DESCRIPTION": "DESC", "ENTITY": "ENTY",
                   "HUMAN": "HUM", "LOCATION": "LOC", "NUMERIC": "NUM"}

# "what/which/name <up to 3 words> NOUN": the head noun of a wh-question names its answer type.
_WH = r"(?:^|\b)(?:what|which|name)\s+(?:(?:is|was|are|were)\s+(?:the|an?)\s+)?(?:\S+\s+){0,3}?"


def _head(*nouns: str) -> str:
    return _WH + r"(?:" + "|".join(nouns) + r")\b"


def _fine(name: str, label: str, pattern: str) -> PatternSource:
    return PatternSource(name=name, task=1, label=FINE.index(label), pattern=pattern)


FINE_SOURCES: tuple[PatternSource, ...] = (
    # ---- abbreviations
    _fine("abb_abbreviation_for", "ABBR:abb",
          r"\b(?:abbreviation|acronym|abbreviated \w+|abbreviated form)\s+(?:for|of)\b"),
    _fine("exp_stand_for", "ABBR:exp", r"\bstands? for\b|\bfull form\b|\bexpansion\b"),
    # an all-capital token asked about: "What is NASA ?", "What does CPR mean ?" (case-sensitive)
    PatternSource("exp_acronym_caps", 1, FINE.index("ABBR:exp"),
                  r"^What (?:is|does|are) (?:an? |the )?(?:`` )?(?:[A-Z]\.?){2,6}(?: '')?\s+"
                  r"(?:mean\s+|stand for\s+)?\?", lowercase=False),
    # ---- descriptions
    _fine("def_what_is_x", "DESC:def",
          r"^what (?:is|are) (?:an? |the )?[a-z][\w\-]*(?: [a-z][\w\-]*)? \?$"),
    _fine("def_mean_define", "DESC:def",
          r"\b(?:what does .+ mean|meaning of|definition of|define|what is meant by)\b"),
    _fine("desc_origin_difference", "DESC:desc",
          r"\b(?:origin of|origins of|difference between|differences between|what happened"
          r"|what happens|history of)\b"),
    _fine("manner_how_aux", "DESC:manner",
          r"^how (?:do|does|did|can|could|should|would|to|is|are|was|were|will|might) "
          r"(?!.*\b(?:cost|weigh|take)\b)"),
    _fine("reason_why", "DESC:reason", r"^why\b|\bfor what reason\b"),
    _fine("reason_famous_cause", "DESC:reason",
          r"\b(?:famous for|known for|what (?:makes|made|causes|caused)|reason)\b"),
    # ---- entities
    _fine("animal_head", "ENTY:animal",
          _head("animals?", "birds?", "dogs?", "breeds?", "fish", "insects?", "mammals?",
                "reptiles?", "snakes?", "cats?", "horses?", "creatures?", "species", "spiders?",
                "whales?", "sharks?", "beetles?", "bugs?", "pets?", "cattle", "monkeys?",
                "apes?", "dinosaurs?")),
    _fine("body_part", "ENTY:body",
          r"\bpart of the (?:human )?body\b|\bbody part\b"
          r"|" + _head("organs?", "bones?", "muscles?", "glands?")),
    _fine("color", "ENTY:color", r"\bcolou?rs?\b"),
    _fine("cremat_head", "ENTY:cremat",
          _head("books?", "novels?", "films?", "movies?", "songs?", "plays?", "poems?",
                "paintings?", "operas?", "albums?", "(?:tv|television) (?:show|series|program)s?",
                "shows?", "series", "comic strips?", "cartoons?", "magazines?", "musicals?",
                "sculptures?", "hits?", "ballets?", "records?")),
    _fine("currency", "ENTY:currency", r"\bcurrency\b|\bmoney (?:is|do|does) .* use\b"),
    _fine("dismed", "ENTY:dismed",
          _head("diseases?", "illness(?:es)?", "syndromes?", "cancers?", "disorders?", "virus",
                "infections?", "drugs?", "medicines?", "medications?", "ailments?")
          + r"|\b(?:cure for|treatment for|symptoms? of)\b"),
    _fine("event_head", "ENTY:event",
          _head("wars?", "battles?", "events?", "festivals?", "holidays?", "revolutions?",
                "hurricanes?", "disasters?", "ceremon(?:y|ies)", "celebrations?", "races?",
                "tournaments?", "competitions?")),
    _fine("food", "ENTY:food",
          _head("foods?", "dish(?:es)?", "drinks?", "fruits?", "vegetables?", "cheeses?",
                "beverages?", "desserts?", "cocktails?", "sauces?", "cand(?:y|ies)", "cereals?",
                "breads?", "soups?", "wines?", "beers?", "cookies?", "pasta", "nuts?", "spices?")
          + r"|\bwhat (?:do|does|did) (?:\S+ ){1,3}eat\b"),
    _fine("instrument", "ENTY:instru", r"\binstruments?\b"),
    _fine("language", "ENTY:lang",
          _head("languages?", "dialects?", "tongue") + r"|^what (?:do|does|did) .* speak\b"),
    _fine("letter", "ENTY:letter", r"\b(?:what|which) letters?\b|\bletter of the alphabet\b"),
    _fine("other_object", "ENTY:other",
          _head("tools?", "devices?", "objects?", "things?", "items?", "weapons?", "toys?",
                "awards?", "prizes?", "inventions?")),
    _fine("plant_head", "ENTY:plant",
          _head("plants?", "trees?", "flowers?", "shrubs?", "grass(?:es)?", "herbs?", "crops?",
                "weeds?", "bushes")),
    _fine("product", "ENTY:product", _head("brands?", "products?", "computers?", "software",
                                           "perfumes?", "cigarettes?", "models?")),
    _fine("religion", "ENTY:religion", _head("religions?", "faiths?", "denominations?", "sects?")),
    _fine("sport", "ENTY:sport", _head("sports?", "(?:board |card )?games?")),
    _fine("substance", "ENTY:substance",
          r"\b(?:what (?:is|are|was|were) (?:\S+ ){1,4}made (?:of|from)|composed of)\b|"
          + _head("elements?", "chemicals?", "minerals?", "metals?", "gas(?:es)?", "substances?",
                  "materials?", "ingredients?", "compounds?", "fabrics?", "fibers?")),
    _fine("symbol", "ENTY:symbol", _head("symbols?", "emblems?", "logos?") + r"|\bsymbol of\b"),
    _fine("techmeth", "ENTY:techmeth",
          r"\b(?:techniques?|methods?|procedures?|process)\b"),
    _fine("termeq", "ENTY:termeq",
          r"^what (?:is|are|was|were) (?:an? |the )?(?:\S+ ){1,5}called \?$"
          r"|\b(?:term for|word for|another (?:word|name|term) for|synonym)\b"),
    _fine("vehicle", "ENTY:veh",
          _head("vehicles?", "cars?", "ships?", "boats?", "planes?", "aircraft", "airplanes?",
                "automobiles?", "submarines?", "trains?", "rockets?", "spacecraft",
                "motorcycles?", "bikes?")),
    _fine("word", "ENTY:word",
          r"\b(?:what|which) words?\b|\brhymes? with\b|\banagram\b|\bpalindrome\b"
          r"|\bspelled\b|\bwords? (?:that|which|beginning|ending|starting)\b"),
    # ---- humans
    # "Who is Zebulon Pike ?": a bare capitalised name asks for a description of the person
    PatternSource("hum_desc_who_is", 1, FINE.index("HUM:desc"),
                  r"^Who (?:is|was) [A-Z][\w\.\-']*(?: [A-Z][\w\.\-']*){0,3} \?$",
                  lowercase=False),
    _fine("hum_gr_head", "HUM:gr",
          _head("company", "companies", "teams?", "groups?", "bands?", "organizations?",
                "universit(?:y|ies)", "colleges?", "schools?", "corporations?", "firms?",
                "agenc(?:y|ies)", "party", "parties", "tribes?", "clubs?", "airlines?",
                "manufacturers?", "networks?", "newspapers?", "army", "armies")),
    _fine("hum_gr_who_makes", "HUM:gr",
          r"^who (?:makes|made|manufactures|produces|produced|publishes|published|sponsors)\b"),
    PatternSource("hum_ind_who", 1, FINE.index("HUM:ind"),
                  r"^(?:Who|who)\b(?! (?:is|was) [A-Z][\w\.\-']*(?: [A-Z][\w\.\-']*){0,3} \?$)"
                  r"|\bwhose\b", lowercase=False),
    _fine("hum_ind_head", "HUM:ind",
          _head("person", "man", "woman", "president", "king", "queen", "actor", "actress",
                "author", "writer", "poet", "singer", "player", "scientist", "explorer",
                "painter", "artist", "inventor", "general", "composer", "leader",
                "astronaut", "pope", "emperor", "director", "architect", "philosopher",
                "comedian", "star", "boxer", "pitcher", "senator", "governor")),
    _fine("hum_title", "HUM:title",
          r"\b(?:occupation|profession|job|for a living|title did|rank did|position did)\b"),
    # ---- locations
    _fine("city", "LOC:city",
          _head("city", "cities", "towns?", "capital", "metropolis") + r"|\bcapital of\b"),
    _fine("country", "LOC:country", _head("country", "countries", "nations?")),
    _fine("mountain", "LOC:mount",
          _head("mountains?", "(?:mountain )?ranges?", "peaks?", "volcano(?:es)?")),
    _fine("where", "LOC:other", r"^where\b|\bwhere (?:is|are|was|were|can|do|does|did)\b"),
    _fine("loc_other_head", "LOC:other",
          _head("rivers?", "lakes?", "oceans?", "seas?", "islands?", "continents?", "deserts?",
                "regions?", "parks?", "planets?", "bays?", "canals?", "streets?", "buildings?",
                "places?", "body of water", "bridges?", "canyons?", "airports?", "stadiums?",
                "hotels?", "museums?")),
    _fine("state", "LOC:state",
          _head("(?<!united )states?", "provinces?", "county", "counties")),
    # ---- numbers
    _fine("code", "NUM:code",
          r"^what (?:is|are|was) (?:\S+ ){0,4}(?:phone number|telephone number|zip code"
          r"|area code|code)\b"),
    _fine("count_how_many", "NUM:count", r"\bhow many\b(?! (?:years|days|hours|minutes))"),
    _fine("count_number_of", "NUM:count", r"\bnumber of\b"),
    _fine("date_when", "NUM:date", r"^when\b|\bwhen (?:is|was|did|does|do|will)\b"),
    _fine("date_head", "NUM:date",
          _head("year", "date", "day", "month", "century", "decade") + r"|\bwhat time\b"),
    _fine("dist", "NUM:dist",
          r"\bhow (?:far|tall|high|deep|wide)\b|\b(?:distance|height|length|altitude|depth"
          r"|elevation)\b"),
    _fine("money", "NUM:money",
          r"\b(?:cost|costs|price|salary|worth|fee|budget|income|wage|fare|spent|spend|earn"
          r"|how much money)\b"),
    _fine("ord_rank", "NUM:ord", r"\b(?:rank|ranks|ranked)\b"),
    _fine("other_number", "NUM:other",
          r"\b(?:statistics|score|average number|how much (?!money)\w+ (?:is|are|was|were)\b)"),
    _fine("perc", "NUM:perc",
          r"\b(?:percentage|percent|odds|chances?|probability|fraction|proportion"
          r"|rate)\b|%"),
    _fine("period", "NUM:period",
          r"\bhow long (?:ago|does|did|do|will|would|has|have|should|can|is a)\b|\bhow old\b"
          r"|\b(?:life ?span|life expectancy|lifetime|how many (?:years|days|hours|minutes))\b"),
    _fine("speed", "NUM:speed", r"\bhow fast\b|\b(?:speed|velocity|mph|miles per hour)\b"),
    _fine("temp", "NUM:temp",
          r"\b(?:temperature|how hot|how cold|degrees|fahrenheit|celsius|centigrade"
          r"|boiling point|freezing point|melting point)\b"),
    _fine("volsize", "NUM:volsize",
          r"\b(?:how big|how large|size of|area of|volume|square (?:miles|feet|kilometers)"
          r"|capacity|acres)\b"),
    _fine("weight", "NUM:weight", r"\b(?:weigh|weighs|weight|how heavy|mass of)\b"),
)


def normalise(text: pd.Series) -> pd.Series:
    """Join key: lower case, letters and digits only, single spaces."""
    return (text.str.lower().str.replace(r"[^a-z0-9]+", " ", regex=True)
            .str.strip())


def read_trec_file(path: Path) -> pd.DataFrame:
    """``COARSE:fine question`` lines -> columns ``text``, ``coarse``, ``fine`` (indices)."""
    lines = pd.Series(path.read_text(encoding="latin-1").splitlines())
    lines = lines[lines.str.strip() != ""]
    parts = lines.str.split(" ", n=1, expand=True)
    fine = parts[0].map({f: i for i, f in enumerate(FINE)})
    if fine.isna().any():
        bad = sorted(set(parts[0][fine.isna()]))
        raise ValueError(f"{path}: unknown fine labels {bad}; expected one of the 50 TREC classes")
    fine = fine.astype(np.int64).to_numpy()
    return pd.DataFrame({"text": parts[1].str.strip().to_numpy(), "fine": fine,
                         "coarse": FINE_TO_COARSE[fine]})


def wrench_lfs(wrench_dir: Path) -> list[tuple[str, int]]:
    """The 68 WRENCH TREC LFs from ``readme.txt``: (regex, coarse index in :data:`COARSE`)."""
    block = (wrench_dir / "readme.txt").read_text().split("# Label Functions", 1)[1]
    out = []
    for line in block.splitlines():
        cols = line.rstrip("\r").split("\t")
        if len(cols) >= 2 and cols[0] in WRENCH_LF_CLASS:
            out.append((cols[1], COARSE.index(WRENCH_LF_CLASS[cols[0]])))
    return out


def _wrench_table(wrench_dir: Path, splits: tuple[str, ...], strip_first_token: bool
                  ) -> pd.DataFrame:
    """WRENCH rows of ``splits`` with join keys and coarse votes remapped to :data:`COARSE`."""
    order = json.loads((wrench_dir / "label.json").read_text())
    remap = np.full(len(order) + 1, ABSTAIN, dtype=np.int64)  # index -1 -> abstain
    for idx, name in order.items():
        remap[int(idx)] = COARSE.index(name)
    frames = []
    for split in splits:
        rows = json.loads((wrench_dir / f"{split}.json").read_text()).values()
        text = pd.Series([r["data"]["text"] for r in rows])
        if strip_first_token:  # WRENCH's test texts start with the fine label ("dist How far...")
            text = text.str.split(" ", n=1).str[1]
        votes = remap[np.array([r["weak_labels"] for r in rows], dtype=np.int64)]
        frames.append(pd.DataFrame({"key": normalise(text), "votes": list(votes)}))
    return pd.concat(frames, ignore_index=True).drop_duplicates("key")


def reapply_wrench_lfs(texts: pd.Series, lfs: list[tuple[str, int]]) -> np.ndarray:
    """``(n, 68)`` votes of the WRENCH regexes on lower-cased questions."""
    lowered = texts.str.lower()
    with warnings.catch_warnings():  # WRENCH's regexes use capture groups; only matches matter
        warnings.simplefilter("ignore", UserWarning)
        cols = [np.where(lowered.str.contains(re.compile(p), regex=True), c, ABSTAIN)
                for p, c in lfs]
    return np.column_stack(cols).astype(np.int64)


@dataclass
class HierarchicalDataset:
    """Label tensors and gold of a two-level hierarchy (task 0 = parent, task 1 = child)."""

    name: str
    task_names: tuple[str, str]
    class_names: tuple[tuple[str, ...], tuple[str, ...]]
    child_to_parent: np.ndarray
    source_names: list[str]
    texts_train: pd.Series
    texts_test: pd.Series
    L_train: np.ndarray  # (n, m, 2) int8, -1 abstain
    L_test: np.ndarray
    Y_train: np.ndarray  # (n, 2) gold, used only for the development report
    Y_test: np.ndarray
    info: dict[str, object]

    @property
    def cardinalities(self) -> tuple[int, int]:
        return (len(self.class_names[0]), len(self.class_names[1]))

    def with_implied_parent_votes(self) -> HierarchicalDataset:
        """Copy whose child votes also fill the implied parent votes (per-task baselines)."""
        out = HierarchicalDataset(**self.__dict__)
        out.L_train = imply_parent_votes(self.L_train, self.child_to_parent)
        out.L_test = imply_parent_votes(self.L_test, self.child_to_parent)
        return out


def load_trec(data_dir: Path | None = None, imply_coarse: bool = False) -> HierarchicalDataset:
    """Build the TREC hierarchy: gold from ``trec_coarse_fine``, coarse votes from WRENCH.

    Train = ``train_5500.label`` (joined to WRENCH train + valid), test = ``TREC_10.label``
    (joined to WRENCH test). ``info`` holds the join rates and the agreement of the re-applied
    WRENCH regexes with WRENCH's stored votes on the joined rows.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    trec_dir, wrench_dir = data_dir / "trec_coarse_fine", data_dir / "wrench_trec"
    lfs = wrench_lfs(wrench_dir)
    info: dict[str, object] = {}
    parts = {}
    for split, fname, wsplits, strip in (("train", "train_5500.label", ("train", "valid"), False),
                                         ("test", "TREC_10.label", ("test",), True)):
        gold = read_trec_file(trec_dir / fname)
        table = _wrench_table(wrench_dir, wsplits, strip)
        key = normalise(gold["text"])
        joined = key.map(dict(zip(table["key"], table["votes"], strict=True)))
        has = joined.notna().to_numpy()
        reapplied = reapply_wrench_lfs(gold["text"], lfs)
        stored = np.stack([v for v in joined[has]]) if has.any() else reapplied[:0]
        coarse = reapplied.copy()
        coarse[has] = stored
        info[f"join_rate_{split}"] = float(has.mean())
        info[f"n_joined_{split}"] = int(has.sum())
        info[f"n_{split}"] = int(len(gold))
        info[f"reapplied_agreement_{split}"] = float((reapplied[has] == stored).mean()) \
            if has.any() else float("nan")
        fine = apply_sources(gold["text"], FINE_SOURCES)
        L = np.full((len(gold), coarse.shape[1] + len(FINE_SOURCES), 2), ABSTAIN, dtype=np.int8)
        L[:, :coarse.shape[1], 0] = coarse
        L[:, coarse.shape[1]:, :] = fine
        parts[split] = (gold, L)
    names = [f"wrench_lf_{j:02d}" for j in range(len(lfs))] + [s.name for s in FINE_SOURCES]
    (gtr, Ltr), (gte, Lte) = parts["train"], parts["test"]
    ds = HierarchicalDataset(
        name="TREC", task_names=("coarse", "fine"), class_names=(COARSE, FINE),
        child_to_parent=FINE_TO_COARSE, source_names=names,
        texts_train=gtr["text"], texts_test=gte["text"], L_train=Ltr, L_test=Lte,
        Y_train=gtr[["coarse", "fine"]].to_numpy(), Y_test=gte[["coarse", "fine"]].to_numpy(),
        info=info)
    return ds.with_implied_parent_votes() if imply_coarse else ds
