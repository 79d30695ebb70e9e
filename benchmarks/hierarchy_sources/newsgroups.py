"""20 Newsgroups as a two-level hierarchy: 7 top-level prefixes, 20 newsgroups.

Task 0 is the top level (alt, comp, misc, rec, sci, soc, talk), task 1 the newsgroup. All
sources are unipolar keyword sources written from general knowledge of what each group
discusses (hardware names, sports teams, religious and political vocabulary ...). A source
votes when its keyword pattern occurs at least ``min_hits`` times in the post (subject line and
body; the other headers are dropped, as is any quoted ``Newsgroups:`` line, which would leak
the label). Keyword lists and thresholds were written and checked on the training split only.

Every group has two keyword sources (a core-vocabulary list and a second, independent list of
names and jargon), every top level two or three; the group sources' votes are stored in task 1
only (``imply_top=True`` also fills the implied top-level vote in task 0).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import KeywordSource, apply_keyword_sources, default_data_dir
from .trec import HierarchicalDataset

TOP = ("alt", "comp", "misc", "rec", "sci", "soc", "talk")
GROUPS = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
    "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc",
)
GROUP_TO_TOP = np.array([TOP.index(g.split(".")[0]) for g in GROUPS], dtype=np.int64)


def _group(name: str, group: str, min_hits: int, *terms: str) -> KeywordSource:
    return KeywordSource(name=name, task=1, label=GROUPS.index(group), terms=terms,
                         min_hits=min_hits)


def _top(name: str, top: str, min_hits: int, *terms: str) -> KeywordSource:
    return KeywordSource(name=name, task=0, label=TOP.index(top), terms=terms,
                         min_hits=min_hits)


GROUP_SOURCES: tuple[KeywordSource, ...] = (
    _group("atheism_core", "alt.atheism", 2,
           "atheism", "atheist", "atheists", "atheistic", "agnostic", "agnostics", "theist",
           "theists", "theism", "nonbeliever", "existence of god", "burden of proof",
           "objective morality", "freethinker"),
    _group("atheism_islam_debate", "alt.atheism", 2,
           "rushdie", "fatwa", "islam", "islamic", "koran", "quran", "dogma", "irrational",
           "religious people", "morality", "moral system"),
    _group("graphics_core", "comp.graphics", 2,
           "graphics", "image", "images", "3d", "rendering", "render", "polygon", "polygons",
           "jpeg", "gif", "tiff", "pixel", "pixels", "ray tracing", "raytracing", "texture",
           "animation", "bitmap"),
    _group("graphics_formats", "comp.graphics", 2,
           "pov", "povray", "targa", "tga", "image processing", "shading", "vertices",
           "algorithm", "file format", "viewer", "morphing", "imagemagick", "xv", "bmp",
           "pcx", "mpeg", "sphere", "2d", "3-d"),
    _group("windows_core", "comp.os.ms-windows.misc", 2,
           "windows 3.1", "win 3.1", "win3.1", "ms-windows", "ms windows", "dos", "ms-dos",
           "program manager", "file manager", "win.ini", "system.ini", "autoexec.bat",
           "config.sys", "windows nt", "win32", "microsoft"),
    _group("windows_jargon", "comp.os.ms-windows.misc", 2,
           "smartdrive", "smartdrv", "emm386", "himem", "dll", "truetype", "swap file",
           "printer driver", "norton", "ini", "icons", "exe", "wfw", "os/2", "desktop"),
    _group("pc_hardware_core", "comp.sys.ibm.pc.hardware", 2,
           "ide", "scsi", "motherboard", "bios", "486", "386", "isa", "eisa", "vlb",
           "local bus", "jumper", "jumpers", "irq", "com port", "com1", "com2", "simm",
           "simms"),
    _group("pc_hardware_parts", "comp.sys.ibm.pc.hardware", 2,
           "hard drive", "floppy", "controller", "dx2", "486dx", "486sx", "386dx", "clone",
           "gateway", "cmos", "mfm", "cache", "drives", "boot", "pc"),
    _group("mac_core", "comp.sys.mac.hardware", 2,
           "mac", "macs", "macintosh", "powerbook", "quadra", "centris", "nubus", "se/30",
           "iisi", "iici", "iicx", "lc ii", "lciii", "lc iii", "performa", "duo"),
    _group("mac_jargon", "comp.sys.mac.hardware", 2,
           "apple", "adb", "68040", "040", "68030", "fpu", "system 7", "system 7.1",
           "finder", "appletalk", "localtalk", "imagewriter", "stylewriter"),
    _group("x_core", "comp.windows.x", 2,
           "x11", "x11r5", "x11r4", "xterm", "motif", "xlib", "widget", "widgets", "xt",
           "window manager", "twm", "openwindows", "xview", "x server", "xdm", "olwm",
           "mwm"),
    _group("x_jargon", "comp.windows.x", 2,
           "colormap", "app-defaults", "xdefaults", "toolkit", "x window", "x windows",
           "display", "event", "callback", "xm", "xmu", "xaw", "expose", "resource"),
    _group("forsale_core", "misc.forsale", 1,
           "for sale", "forsale", "obo", "best offer", "or best offer", "asking price",
           "shipping", "shipping included", "plus shipping", "new in box", "sell"),
    _group("forsale_condition", "misc.forsale", 2,
           "excellent condition", "good condition", "mint condition", "brand new",
           "never used", "barely used", "original box", "offer", "offers", "asking",
           "e-mail me", "email me"),
    _group("autos_core", "rec.autos", 2,
           "car", "cars", "engine", "dealer", "dealership", "transmission", "sedan", "v6",
           "v8", "tires", "mileage", "mpg", "horsepower", "wagon", "convertible"),
    _group("autos_makes", "rec.autos", 2,
           "ford", "toyota", "nissan", "mazda", "chevy", "chevrolet", "saab", "volvo",
           "mustang", "camry", "corolla", "civic", "accord", "porsche", "audi", "jeep",
           "oldsmobile", "pontiac", "dodge", "buick", "cadillac", "gm", "honda"),
    _group("moto_core", "rec.motorcycles", 2,
           "bike", "bikes", "motorcycle", "motorcycles", "helmet", "riding", "ride", "rider",
           "riders", "biker", "bikers", "dod", "countersteering", "motorcyclist"),
    _group("moto_makes", "rec.motorcycles", 2,
           "harley", "kawasaki", "yamaha", "suzuki", "ducati", "bmw", "zx", "gpz", "cbr",
           "fzr", "gsxr", "goldwing", "triumph", "norton", "sportster", "leathers"),
    _group("baseball_core", "rec.sport.baseball", 2,
           "baseball", "pitcher", "pitchers", "pitching", "inning", "innings", "hitter",
           "hitters", "batting", "home run", "home runs", "rbi", "era", "world series",
           "shortstop", "outfielder", "catcher", "bullpen"),
    _group("baseball_teams", "rec.sport.baseball", 2,
           "yankees", "red sox", "braves", "mets", "dodgers", "cubs", "phillies", "jays",
           "orioles", "giants", "reds", "astros", "padres", "mariners", "angels", "tigers",
           "twins", "royals", "brewers", "expos", "pirates", "cardinals", "marlins",
           "rockies", "white sox", "indians", "athletics"),
    _group("hockey_core", "rec.sport.hockey", 2,
           "hockey", "nhl", "puck", "goalie", "goalies", "stanley cup", "power play",
           "penalty", "ahl", "defenseman", "defencemen", "overtime", "hat trick", "ice"),
    _group("hockey_teams", "rec.sport.hockey", 2,
           "penguins", "bruins", "canadiens", "habs", "leafs", "flyers", "rangers",
           "devils", "islanders", "sabres", "oilers", "flames", "canucks", "kings",
           "blackhawks", "red wings", "nordiques", "whalers", "capitals", "lemieux",
           "gretzky", "jets", "senators", "lightning", "sharks", "blues", "north stars"),
    _group("crypt_core", "sci.crypt", 2,
           "encryption", "crypto", "cryptography", "cryptographic", "key escrow", "clipper",
           "pgp", "des", "rsa", "cipher", "encrypt", "encrypted", "decrypt", "wiretap",
           "skipjack", "plaintext", "ciphertext"),
    _group("crypt_policy", "sci.crypt", 2,
           "nsa", "escrow", "privacy", "keys", "key", "secure", "security", "chip",
           "algorithm", "eff", "denning", "public key", "secret"),
    _group("electronics_core", "sci.electronics", 2,
           "circuit", "circuits", "voltage", "resistor", "resistors", "capacitor",
           "capacitors", "transistor", "transistors", "amplifier", "op-amp", "op amp",
           "diode", "diodes", "power supply", "oscilloscope", "solder", "schematic", "ohm",
           "ohms", "volts", "volt"),
    _group("electronics_jargon", "sci.electronics", 2,
           "led", "leds", "grounded", "wiring", "electronics", "radar", "detector", "amps",
           "watts", "pcb", "breadboard", "multimeter", "relay", "inductor", "mosfet", "ttl",
           "cmos logic", "555"),
    _group("med_core", "sci.med", 2,
           "doctor", "doctors", "patient", "patients", "disease", "diseases", "treatment",
           "symptoms", "medical", "medicine", "physician", "physicians", "clinical",
           "therapy", "diagnosis", "surgery"),
    _group("med_conditions", "sci.med", 2,
           "msg", "cancer", "infection", "diet", "pain", "candida", "yeast", "migraine",
           "vitamin", "vitamins", "allergy", "allergies", "blood", "hospital", "drug",
           "drugs", "syndrome", "chronic"),
    _group("space_core", "sci.space", 2,
           "space", "nasa", "orbit", "orbital", "shuttle", "launch", "satellite",
           "satellites", "spacecraft", "rocket", "rockets", "astronaut", "astronauts",
           "space station", "lunar", "jpl", "hubble"),
    _group("space_bodies", "sci.space", 2,
           "moon", "mars", "solar", "planet", "planets", "earth", "mission", "probe",
           "telescope", "esa", "payload", "galileo", "venus", "jupiter", "asteroid",
           "comet", "apollo", "soviet space"),
    _group("christian_core", "soc.religion.christian", 2,
           "christ", "jesus", "church", "churches", "christian", "christians", "gospel",
           "scripture", "scriptures", "salvation", "prayer", "holy spirit", "resurrection"),
    _group("christian_doctrine", "soc.religion.christian", 2,
           "catholic", "catholics", "protestant", "protestants", "baptism", "eucharist",
           "pastor", "congregation", "sacrament", "sacraments", "orthodox", "trinity",
           "apostle", "apostles", "sin", "sins", "grace", "heaven", "hell"),
    _group("guns_core", "talk.politics.guns", 2,
           "gun", "guns", "firearm", "firearms", "nra", "second amendment", "handgun",
           "handguns", "rifle", "rifles", "assault weapon", "assault weapons", "ammunition",
           "ammo", "concealed carry", "brady bill", "gun control"),
    _group("guns_waco", "talk.politics.guns", 2,
           "batf", "atf", "waco", "koresh", "compound", "fbi", "militia", "shoot",
           "shooting", "self-defense", "self defense", "criminals", "weapons", "weapon"),
    _group("mideast_core", "talk.politics.mideast", 2,
           "israel", "israeli", "israelis", "palestinian", "palestinians", "arab", "arabs",
           "jews", "jewish", "zionist", "zionism", "gaza", "west bank", "plo", "lebanon",
           "syria", "occupied territories"),
    _group("mideast_turk_armenia", "talk.politics.mideast", 2,
           "turkey", "turkish", "turks", "armenia", "armenian", "armenians", "azerbaijan",
           "azeri", "genocide", "ottoman", "kurds", "kurdish", "iran", "iraq", "muslim",
           "muslims"),
    _group("politics_core", "talk.politics.misc", 2,
           "clinton", "congress", "tax", "taxes", "libertarian", "republican", "republicans",
           "democrat", "democrats", "liberal", "liberals", "conservative", "conservatives",
           "deficit", "perot", "bush", "president", "senate"),
    _group("politics_issues", "talk.politics.misc", 3,
           "gay", "gays", "homosexual", "homosexuals", "homosexuality", "abortion",
           "health care", "welfare", "economy", "drug legalization", "legalization",
           "government", "federal", "administration", "policy", "election"),
    _group("religion_misc_cults", "talk.religion.misc", 2,
           "cult", "cults", "koresh", "davidian", "davidians", "occult", "new age", "mormon",
           "mormons", "scientology", "rosicrucian", "satan", "satanic", "pagan", "witch",
           "witchcraft", "seventh day"),
    _group("religion_misc_bible", "talk.religion.misc", 2,
           "prophecy", "prophecies", "prophet", "prophets", "messiah", "jehovah", "lucifer",
           "hindu", "buddhism", "buddhist", "zen", "magick", "astrology", "ra", "tyre",
           "amorc", "biblical contradictions"),
)

TOP_SOURCES: tuple[KeywordSource, ...] = (
    _top("top_alt_unbelief", "alt", 2,
         "atheism", "atheist", "atheists", "agnostic", "no god", "not believe", "don't believe",
         "disbelief", "unbeliever", "believers", "evidence for god"),
    _top("top_alt_argument", "alt", 3,
         "atheism", "atheists", "morality", "moral", "objective", "islam", "rushdie",
         "koran", "dogma", "absolute", "creationism", "creationist", "fallacy"),
    _top("top_comp_software", "comp", 3,
         "software", "program", "programs", "file", "files", "ftp", "version", "install",
         "directory", "unix", "application", "applications", "source code", "compile",
         "library", "driver", "drivers", "format", "user", "window", "windows"),
    _top("top_comp_hardware", "comp", 3,
         "computer", "computers", "hardware", "disk", "memory", "ram", "cpu", "mb", "kb",
         "mhz", "megabyte", "megabytes", "bytes", "port", "upgrade", "monitor", "card",
         "keyboard", "mouse", "printer", "video", "screen"),
    _top("top_misc_sale", "misc", 2,
         "sale", "sell", "selling", "for sale", "shipping", "offer", "buyer", "condition",
         "asking"),
    _top("top_misc_items", "misc", 2,
         "shipping and handling", "s&h", "postage", "buyer pays", "first come", "will sell",
         "sold", "cod", "money order", "shipped", "obo", "o.b.o.", "negotiable"),
    _top("top_rec_sports", "rec", 3,
         "game", "games", "team", "teams", "season", "player", "players", "fan", "fans",
         "score", "league", "playoffs", "win", "won", "coach", "series", "goal", "hit"),
    _top("top_rec_vehicles", "rec", 3,
         "car", "cars", "bike", "bikes", "ride", "riding", "driving", "drive", "engine",
         "road", "miles", "speed", "highway", "wheel", "tires", "brakes"),
    _top("top_sci_research", "sci", 3,
         "science", "scientific", "research", "researchers", "theory", "experiment",
         "experiments", "data", "study", "studies", "physics", "laboratory", "lab",
         "measurement", "journal"),
    _top("top_sci_technical", "sci", 3,
         "energy", "frequency", "signal", "algorithm", "mathematical", "temperature",
         "technology", "technical", "engineering", "chemical", "power", "system",
         "systems", "nasa", "medical", "key"),
    _top("top_soc_faith", "soc", 2,
         "jesus", "christ", "lord", "church", "faith", "pray", "prayer", "holy", "spirit",
         "god's", "gospel", "christian", "christians", "christianity"),
    _top("top_soc_community", "soc", 3,
         "bible", "scripture", "verse", "verses", "paul", "catholic", "love", "sin",
         "grace", "heaven", "believe", "believers", "worship"),
    _top("top_talk_politics", "talk", 3,
         "government", "president", "congress", "law", "laws", "rights", "policy",
         "political", "politics", "country", "war", "state", "states", "citizens",
         "constitution", "federal"),
    _top("top_talk_conflict", "talk", 3,
         "kill", "killed", "killing", "violence", "crime", "crimes", "people", "innocent",
         "massacre", "army", "soldiers", "attack", "murder", "children", "women"),
)

SOURCES: tuple[KeywordSource, ...] = TOP_SOURCES + GROUP_SOURCES


def post_text(raw: pd.Series) -> pd.Series:
    """Subject line plus body of each post; other headers and ``Newsgroups:`` lines dropped."""
    parts = raw.str.split("\n\n", n=1, expand=True)
    header, body = parts[0], parts[1].fillna("")
    subject = header.str.extract(r"(?im)^subject:(.*)$", expand=False).fillna("")
    body = body.str.replace(r"(?im)^[\s>|:]*newsgroups:.*$", "", regex=True)
    return subject + "\n" + body


def read_posts(data_dir: Path | None = None) -> pd.DataFrame:
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    path = data_dir / "20newsgroups_bydate" / "20news_bydate.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        frame = pd.DataFrame([json.loads(line) for line in fh])
    frame["group"] = frame["newsgroup"].map({g: i for i, g in enumerate(GROUPS)})
    frame["top"] = GROUP_TO_TOP[frame["group"].to_numpy()]
    frame["text"] = post_text(frame["text"])
    return frame


def load_newsgroups(data_dir: Path | None = None, imply_top: bool = False) -> HierarchicalDataset:
    """Build the 20 Newsgroups hierarchy (bydate train / test split)."""
    posts = read_posts(data_dir)
    tr, te = posts[posts["split"] == "train"], posts[posts["split"] == "test"]
    ds = HierarchicalDataset(
        name="20 Newsgroups", task_names=("top", "group"), class_names=(TOP, GROUPS),
        child_to_parent=GROUP_TO_TOP, source_names=[s.name for s in SOURCES],
        texts_train=tr["text"].reset_index(drop=True),
        texts_test=te["text"].reset_index(drop=True),
        L_train=apply_keyword_sources(tr["text"], SOURCES),
        L_test=apply_keyword_sources(te["text"], SOURCES),
        Y_train=tr[["top", "group"]].to_numpy(), Y_test=te[["top", "group"]].to_numpy(),
        info={"n_train": int(len(tr)), "n_test": int(len(te))})
    return ds.with_implied_parent_votes() if imply_top else ds
