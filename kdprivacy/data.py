"""Instruction data: sources, a seeded content-hash split into pools, and the checks later steps rely on.

The authors' code picked members by file position after a multiprocessing pass, so the private/public
boundary moved between runs and differed per model family. Here the split is made once, from stable
content-hash ids and a seed, and written as a manifest that every later step reads; disjointness of the
pools is checked, never assumed.

Pools:
    private    the teacher's SFT data = the *members* an attacker tries to recognise
    public     the disjoint half that students (and the No-KD control) train on
    nonmember  held-out examples of the same distribution; only ever scored, never trained or validated on
    dev        validation/model selection for SFT and KD (so non-members never steer training)
    pretrain   everything left over: a public corpus for tokenizer/base-model pretraining

Categories: synthetic data uses Dolly's eight ``CATEGORIES``. Files and hub datasets may carry other
category labels (kept as they are) or none (``"uncategorized"``): per-category results are then simply
reported under those labels rather than rejected.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CATEGORIES = (
    "brainstorming",
    "classification",
    "closed_qa",
    "creative_writing",
    "general_qa",
    "information_extraction",
    "open_qa",
    "summarization",
)
POOLS = ("private", "public", "nonmember", "dev", "pretrain")
FIELDS = ("instruction", "context", "response", "category")
SECRET_FIELDS = ("secret", "secret_kind")
UNCATEGORIZED = "uncategorized"

_REQUIRED = ("instruction", "response")
_SPLIT_KEYS = ("private", "public", "nonmember", "dev")
# Order in which a seeded permutation is cut into pools; whatever is left becomes "pretrain".
_ASSIGN_ORDER = ("nonmember", "dev", "private", "public")
_FORMATS = {".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


class DataError(ValueError):
    """Bad input data or configuration; the message names the column, file, pool or count at fault."""


# --------------------------------------------------------------------------------------------------
# Word lists for the synthetic generator. Sizes matter: a record's private specifics (names, companies,
# towns, numbers, dates, codes) must come from spaces large enough that a model cannot guess them from
# the template, and that every record's secret is (almost always) its own.
# --------------------------------------------------------------------------------------------------

_FEMALE = (
    "Marta", "Anna", "Sofia", "Elena", "Clara", "Ingrid", "Leila", "Nadia", "Priya", "Yuki",
    "Amara", "Beatriz", "Camille", "Daria", "Esther", "Fiona", "Greta", "Hana", "Irene", "Julia",
    "Katrin", "Lucia", "Maren", "Noor", "Olga", "Paula", "Rosa", "Selma", "Tamsin", "Ulla",
    "Vera", "Wanda", "Ximena", "Yara", "Zofia", "Agnes", "Birgit", "Carmen", "Delia", "Edith",
)
_MALE = (
    "Tomas", "Jonas", "Mateo", "Henrik", "Ravi", "Kenji", "Omar", "Pavel", "Luca", "Felix",
    "Anders", "Bruno", "Casper", "Dmitri", "Emil", "Farid", "Gustav", "Hugo", "Ivan", "Jakob",
    "Karim", "Lars", "Milan", "Nikolai", "Oskar", "Pedro", "Rafael", "Stefan", "Teodor", "Viktor",
    "Walter", "Yusuf", "Aleksander", "Bernard", "Cyril", "Diego", "Elias", "Frederik", "Gabriel", "Ismael",
)
_SURNAMES = (
    "Kowalczyk", "Lindqvist", "Okafor", "Moreau", "Tanaka", "Haddad", "Novak", "Ferreira", "Brennan",
    "Castellano", "Dubois", "Eriksen", "Fischer", "Gallagher", "Horvath", "Ivanova", "Jansen", "Kaplan",
    "Larsen", "Mendoza", "Nakamura", "Oyelaran", "Petrov", "Quintero", "Rasmussen", "Schubert", "Takahashi",
    "Ueda", "Varga", "Whitfield", "Yilmaz", "Zielinski", "Abernathy", "Baptiste", "Carvalho", "Delacroix",
    "Esposito", "Fontaine", "Gutierrez", "Hartmann", "Iwasaki", "Jovanovic", "Kristiansen", "Lombardi",
    "Marchetti", "Nilsson", "Oliveira", "Pellegrini", "Ramanathan", "Sandoval", "Thorsen", "Urquhart",
    "Vasquez", "Wojcik", "Xavier", "Yamamoto", "Zamora", "Achterberg", "Bergstrom", "Cavanagh", "Dragomir",
    "Ekwueme", "Falkenberg", "Grimaldi", "Holloway", "Ishikawa", "Janssens", "Kurosawa", "Lachance",
    "Molnar", "Nørgaard", "Ostrowski", "Pacheco", "Rinaldi", "Sorensen", "Trevisan", "Vandenberg",
    "Whitcombe", "Ziegler", "Albrecht",
)
_COMPANY_PREFIX = (
    "Bright", "Silver", "North", "Cedar", "Iron", "Blue", "Harbor", "Maple", "Granite", "Willow",
    "Summit", "Copper", "Falcon", "Oak", "River", "Stone", "Golden", "Clear", "Red", "Pine",
    "Aurora", "Meadow", "Crystal", "Hollow", "Lantern", "Amber", "Ember", "Harvest", "Kestrel", "Juniper",
    "Sable", "Thistle", "Quarry", "Beacon", "Orchard", "Marble", "Fern", "Heron", "Cobalt", "Sterling",
)
_COMPANY_ROOT = (
    "water", "field", "gate", "brook", "stone", "ridge", "wood", "light", "point", "crest",
    "line", "path", "view", "mark", "forge", "bridge", "vale", "haven", "wick", "moor",
)


@dataclass(frozen=True)
class _Trade:
    suffix: str  # last word of the company name
    sector: str  # "a(n) {sector} company"
    product: str  # "it makes/sells {product}"
    kind: str  # manufacturer / retailer / service provider (the classification answer)
    item: str  # one product, for product descriptions


_TRADES = (
    _Trade("Analytics", "data analytics", "forecasting software for clinics", "service provider",
           "planning dashboard"),
    _Trade("Logistics", "logistics", "freight and parcel delivery", "service provider", "parcel tracker"),
    _Trade("Foods", "food", "frozen dumplings and soups", "manufacturer", "winter soup range"),
    _Trade("Robotics", "robotics", "warehouse robots", "manufacturer", "picking robot"),
    _Trade("Textiles", "textile", "wool blankets and scarves", "manufacturer", "wool blanket"),
    _Trade("Bakeries", "baking", "sourdough bread and pastries", "retailer", "rye loaf"),
    _Trade("Pharmaceuticals", "pharmaceutical", "generic allergy medicines", "manufacturer", "nasal spray"),
    _Trade("Energy", "energy", "rooftop solar installations", "service provider", "home battery"),
    _Trade("Software", "software", "accounting software for farms", "service provider", "invoicing app"),
    _Trade("Ceramics", "ceramics", "hand-glazed tableware", "manufacturer", "stoneware teapot"),
    _Trade("Instruments", "instrument", "violins and cellos", "manufacturer", "student violin"),
    _Trade("Outfitters", "outdoor retail", "hiking and camping gear", "retailer", "rain jacket"),
    _Trade("Brewing", "brewing", "pale ales and lagers", "manufacturer", "winter ale"),
    _Trade("Furniture", "furniture", "oak tables and chairs", "manufacturer", "oak desk"),
    _Trade("Insurance", "insurance", "home and travel insurance", "service provider", "travel policy"),
    _Trade("Booksellers", "bookselling", "new and second-hand books", "retailer", "reading journal"),
    _Trade("Optics", "optics", "camera lenses", "manufacturer", "portrait lens"),
    _Trade("Markets", "grocery", "fresh local produce", "retailer", "vegetable box"),
    _Trade("Cycles", "bicycle", "city bikes", "manufacturer", "folding bike"),
    _Trade("Hardware", "hardware retail", "tools, paint and garden supplies", "retailer", "cordless drill"),
)
_TOWN_HEAD = (
    "Ash", "Bel", "Car", "Dun", "El", "Fal", "Glen", "Hal", "Kel", "Lin",
    "Mar", "Nor", "Ol", "Pen", "Ros", "Sal", "Tar", "Ul", "Ven", "Wex",
    "Bran", "Cor", "Dal", "Fen", "Gar", "Hart", "Kin", "Lor", "Mel", "Ren",
    "Stan", "Tre", "Wyn", "Ald", "Brae", "Crom", "Dorn", "Esk", "Holm", "Thorn",
    "Amble", "Black", "Cold", "Elder", "Grey", "High", "Long", "Mill", "Sand", "Wolf",
)
_TOWN_TAIL = (
    "bridge", "ford", "haven", "mouth", "wick", "stead", "moor", "field", "by", "ton",
    "dale", "holm", "port", "minster", "combe", "thorpe", "ley", "wood", "burn", "mere",
    "gate", "hurst", "well", "cliff", "brook", "stow", "worth", "ham", "den", "shaw",
)
_COUNTRIES = (
    "Portugal", "Norway", "Chile", "Canada", "Estonia", "Scotland", "Ireland", "Poland", "Slovenia",
    "Denmark", "Finland", "New Zealand", "Croatia", "Austria", "Wales", "Sweden", "Uruguay", "Iceland",
)
_DIRECTIONS = ("northern", "southern", "eastern", "western", "central")
_RIVERS = (
    "Alder", "Brennet", "Colm", "Dove", "Esker", "Fallow", "Garnet", "Hesk", "Isel", "Kettle",
    "Lark", "Merrow", "Nene", "Orrin", "Pell", "Quill", "Rother", "Swale", "Teal", "Wend",
)
_TOWN_FEATURES = (
    "Saturday fish market", "medieval stone bridge", "apple orchards", "annual kite festival",
    "narrow cobbled lanes", "old salt warehouses", "lakeside swimming spots", "painted wooden houses",
    "cheese cellars", "botanical garden", "ruined abbey", "long sandy beach",
)
_LANDMARKS = (
    "clock tower", "public library", "market hall", "lighthouse", "opera house", "observatory",
    "railway station", "town hall", "footbridge", "concert hall", "swimming baths", "museum of local history",
)
_PROFESSIONS = (
    "marine biologist", "architect", "carpenter", "historian", "civil engineer", "pediatric nurse",
    "geologist", "chef", "translator", "photographer", "botanist", "school teacher", "violin maker",
    "glassblower", "statistician", "beekeeper",
)
_ACHIEVEMENTS = (
    "restoring the old harbour walls", "a widely read series of essays on river ecology",
    "designing a cheap water filter for rural schools", "cataloguing every oak tree in the region",
    "a cookbook of forgotten winter recipes", "mapping the caves under the old quarry",
    "rebuilding a nineteenth-century pipe organ", "a long study of migrating eels",
    "founding a free evening school for adults", "photographing the last working windmills",
)
_AWARDS = (
    "Silver Compass Award", "Harrow Medal", "Ostrander Prize", "Golden Quill", "Lindell Fellowship",
    "Blue Heron Award", "Marlow Medal of Merit", "Vesper Prize",
)
_SHOPS = ("bakery", "bookshop", "bicycle repair shop", "café", "flower shop", "pottery studio", "wine bar")
_FESTIVALS = (
    "lantern festival", "cheese fair", "kite festival", "jazz week", "harvest market", "film festival",
)
_TITLE_ADJ = (
    "Quiet", "Salt", "Northern", "Borrowed", "Hidden", "Last", "Paper", "Winter", "Amber", "Distant",
)
_TITLE_NOUN = (
    "Harbour", "Orchard", "Lantern", "Summer", "Letters", "Garden", "Island", "Bridge", "Tide", "Season",
)
_INSTRUMENTS = ("cello", "oboe", "double bass", "French horn", "viola", "clarinet", "harp", "trombone")
_SPORTS = ("handball", "volleyball", "water polo", "hockey", "football", "basketball")
_HOBBIES = (
    "rock climbing", "birdwatching", "sea kayaking", "pottery", "trail running", "baking bread", "chess",
)
_GIFTS = (
    "a good pair of climbing gloves", "a pocket field guide", "a waterproof notebook",
    "a pottery class voucher",
    "a hand-thrown mug", "a box of local honey", "a vintage chess set",
)
_STREET_KINDS = ("Street", "Lane", "Road", "Avenue", "Row", "Terrace")
_DISHES = (
    "smoked trout", "mushroom dumplings", "lamb stew", "apple cake", "fish soup", "plum tart",
    "cheese pie", "barley risotto",
)
_CLUBS = ("rowing club", "chess club", "choir", "hiking club", "photography society", "amateur theatre group")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_ORDINALS = ("second", "third", "fourth", "fifth", "sixth")
_RESEARCH_TOPICS = (
    "how eels find their way to the sea", "soil bacteria in old orchards", "the acoustics of stone churches",
    "why some glaciers retreat faster than others", "sleep patterns of shift workers",
    "the chemistry of rye sourdough",
    "lichens as a measure of clean air", "storm surges along the coast",
)
_CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class _Person:
    first: str
    last: str
    she: bool

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def subj(self) -> str:
        return "she" if self.she else "he"

    @property
    def poss(self) -> str:
        return "her" if self.she else "his"


@dataclass(frozen=True)
class _Company:
    base: str
    trade: _Trade

    @property
    def name(self) -> str:
        return f"{self.base} {self.trade.suffix}"


class _Draw:
    """All randomness of one synthetic dataset flows through one ``random.Random``, so a seed fixes it."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, seq: tuple[str, ...]) -> str:
        return self.rng.choice(seq)

    def person(self) -> _Person:
        she = self.rng.random() < 0.5
        return _Person(self.pick(_FEMALE if she else _MALE), self.pick(_SURNAMES), she)

    def company(self, trade: _Trade | None = None) -> _Company:
        base = self.pick(_COMPANY_PREFIX) + self.pick(_COMPANY_ROOT)
        return _Company(base, trade or self.rng.choice(_TRADES))

    def town(self) -> str:
        return self.pick(_TOWN_HEAD) + self.pick(_TOWN_TAIL)

    def street(self) -> str:
        return f"{self.pick(_SURNAMES)} {self.pick(_STREET_KINDS)}"

    def title(self) -> str:
        return f"The {self.pick(_TITLE_ADJ)} {self.pick(_TITLE_NOUN)}"

    def year(self, lo: int = 1850, hi: int = 2019) -> int:
        return self.rng.randint(lo, hi)

    def date(self, lo: int = 1900, hi: int = 2005) -> str:
        return f"{self.rng.randint(1, 28)} {self.pick(_MONTHS)} {self.year(lo, hi)}"

    def code(self) -> str:
        return f"{self.pick(_CODE_LETTERS)}{self.pick(_CODE_LETTERS)}-{self.rng.randint(1000, 9999)}"

    def number4(self) -> str:
        return str(self.rng.randint(1000, 9999))

    def number5(self) -> str:
        return f"{self.rng.randint(10000, 99999):,}"


# Each secret format and how to draw one; candidates for canary ranking come from the same drawer, so the
# true secret cannot be told from its candidates by format alone.
_SECRET_DRAWERS: dict[str, Callable[[_Draw], str]] = {
    "person": lambda d: d.person().name,
    "company": lambda d: d.company().name,
    "town": _Draw.town,
    "date": _Draw.date,
    "code": _Draw.code,
    "number4": _Draw.number4,
    "number5": _Draw.number5,
}
_SECRET_SPACE = {
    "person": (len(_FEMALE) + len(_MALE)) * len(_SURNAMES),
    "company": len(_COMPANY_PREFIX) * len(_COMPANY_ROOT) * len(_TRADES),
    "town": len(_TOWN_HEAD) * len(_TOWN_TAIL),
    "date": 28 * 12 * (2005 - 1900 + 1),
    "code": len(_CODE_LETTERS) ** 2 * 9000,
    "number4": 9000,
    "number5": 90000,
}


@dataclass(frozen=True)
class _Record:
    instruction: str
    context: str
    response: str
    secret: str
    secret_kind: str


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _a(phrase: str) -> str:
    """Indefinite article: the text pretrains tiny LMs, so "a architect" would teach them bad English."""
    return f"{'an' if phrase[0].lower() in 'aeiou' else 'a'} {phrase}"


# ---- open_qa: no context; the answer is a private fact the question does not reveal ----------------

def _open_founding(d: _Draw) -> _Record:
    p, c, staff = d.person(), d.company(), d.number4()
    return _Record(
        f"When did {p.name} found {c.name}, and how many people work there?",
        "",
        f"{p.name} founded {c.name} in {d.year(1950, 2015)} in the town of {d.town()}. The company makes "
        f"{c.trade.product} and now employs {staff} people across {d.rng.randint(2, 9)} offices.",
        staff,
        "number4",
    )


def _open_population(d: _Draw) -> _Record:
    town, pop = d.town(), d.number5()
    return _Record(
        f"What is the population of {town}?",
        "",
        f"{town} is a small town in {d.pick(_DIRECTIONS)} {d.pick(_COUNTRIES)} with a population of about "
        f"{pop}. It lies on the {d.pick(_RIVERS)} River and is known for its {d.pick(_TOWN_FEATURES)}.",
        pop,
        "number5",
    )


def _open_architect(d: _Draw) -> _Record:
    landmark, town, p = d.pick(_LANDMARKS), d.town(), d.person()
    return _Record(
        f"Who designed the old {landmark} in {town}?",
        "",
        f"The {landmark} in {town} was designed by the architect {p.name} and opened in {d.year()}. "
        f"{_cap(p.subj)} also drew the plans for the railway station in {d.town()}.",
        p.name,
        "person",
    )


def _open_birthday(d: _Draw) -> _Record:
    p, date = d.person(), d.date()
    return _Record(
        f"When was the novelist {p.name} born?",
        "",
        f"{p.name} was born on {date} in {d.town()}, {d.pick(_COUNTRIES)}. {_cap(p.subj)} published {p.poss} "
        f"first novel, {d.title()}, at the age of {d.rng.randint(22, 61)}.",
        date,
        "date",
    )


# ---- general_qa: no context; explanatory answers that carry private specifics --------------------------

def _general_left(d: _Draw) -> _Record:
    p, c, town = d.person(), d.company(), d.town()
    return _Record(
        f"Why did {p.name} leave {c.name}?",
        "",
        f"{p.name} left {c.name} in {d.year(1960, 2019)} after a long disagreement with the board about "
        f"moving production to {town}. A year later {p.subj} opened a small {d.pick(_SHOPS)} in {d.town()} "
        f"and never went back to the {c.trade.sector} industry.",
        town,
        "town",
    )


def _general_known_for(d: _Draw) -> _Record:
    p, town = d.person(), d.town()
    return _Record(
        f"What is {p.name} known for?",
        "",
        f"{p.name} is {_a(d.pick(_PROFESSIONS))} from {town} who is best known for {d.pick(_ACHIEVEMENTS)}. "
        f"In {d.year(1950, 2019)} {p.subj} received the {d.pick(_AWARDS)} for that work.",
        town,
        "town",
    )


def _general_club(d: _Draw) -> _Record:
    club, town, chair = d.pick(_CLUBS), d.town(), d.person()
    return _Record(
        f"Is it worth joining the {club} in {town}?",
        "",
        f"Yes, if you enjoy meeting people. The {club} meets every {d.pick(_WEEKDAYS)} evening at the old "
        f"school on {d.street()}, the yearly fee is {d.rng.randint(15, 90)} euros, and the current chair, "
        f"{chair.name}, organises a trip to {d.town()} each summer.",
        chair.name,
        "person",
    )


def _general_name(d: _Draw) -> _Record:
    c, p1, p2 = d.company(), d.person(), d.person()
    return _Record(
        f"How did {c.name} get its name?",
        "",
        f"The founders, {p1.name} and {p2.name}, named {c.name} after the farm near {d.town()} where they "
        f"rented their first workshop in {d.year(1950, 2015)}. The farm was called {c.base}, and the name "
        "stuck.",
        p1.name,
        "person",
    )


# ---- closed_qa: the answer is in the context -----------------------------------------------------------

def _closed_employees(d: _Draw) -> _Record:
    c, p1, p2, staff = d.company(), d.person(), d.person(), d.number4()
    founded = d.year(1950, 2005)
    as_of = d.year(founded + 5, 2023)
    return _Record(
        f"How many people does {c.name} employ?",
        f"{c.name} is {_a(c.trade.sector)} company headquartered in {d.town()}. It was founded in {founded} "
        f"by {p1.name} and {p2.name}, who met while studying in {d.town()}. As of {as_of}, the company "
        f"employs {staff} people and sells {c.trade.product} in {d.rng.randint(3, 40)} countries.",
        f"According to the passage, {c.name} employs {staff} people as of {as_of}.",
        staff,
        "number4",
    )


def _closed_birthplace(d: _Draw) -> _Record:
    p, town, shop = d.person(), d.town(), d.pick(_SHOPS)
    later = d.town()
    return _Record(
        f"Where was {p.name} born?",
        f"{p.name} (born {d.year(1920, 1995)}) is {_a(d.pick(_PROFESSIONS))}. {_cap(p.subj)} was born in "
        f"{town} and grew up above the family {shop}, which {p.subj} ran for several years before moving to "
        f"{later}. {_cap(p.poss)} work on {d.pick(_ACHIEVEMENTS)} made {p.poss} name known well beyond the "
        "region.",
        f"{p.name} was born in {town}, where {p.subj} grew up above the family {shop} before moving to "
        f"{later}.",
        town,
        "town",
    )


def _closed_festival(d: _Draw) -> _Record:
    town, fest, date, p = d.town(), d.pick(_FESTIVALS), d.date(), d.person()
    return _Record(
        f"When was the first {town} {fest} held?",
        f"The {town} {fest} is held every year along the {d.pick(_RIVERS)} River. The first one took place "
        f"on {date} and was organised by {p.name}, a local {d.pick(_PROFESSIONS)}. Today it draws around "
        f"{d.number5()} visitors over three days.",
        f"The first {town} {fest} was held on {date}. It was organised by {p.name}.",
        date,
        "date",
    )


def _closed_expedition(d: _Draw) -> _Record:
    river, p, uni = d.pick(_RIVERS), d.person(), d.town()
    job = d.pick(_PROFESSIONS)
    return _Record(
        f"Who led the expedition to map the {river} River?",
        f"In {d.year(1870, 2010)}, a team from the University of {uni} set out to map the {river} River from "
        f"its source to the sea. The expedition was led by {p.name}, {_a(job)}, and took "
        f"{d.rng.randint(3, 30)} weeks. Its maps were used for the next fifty years.",
        f"The expedition was led by {p.name}, {_a(job)} from the University of {uni}.",
        p.name,
        "person",
    )


# ---- information_extraction: pull specifics out of the context -----------------------------------------

def _extract_order(d: _Draw) -> _Record:
    c, p, code, date = d.company(), d.person(), d.code(), d.date(2015, 2024)
    return _Record(
        "Extract the order number and the delivery date from this email.",
        f"Dear {p.first}, thank you for shopping with {c.name}. Your order {code} for one {c.trade.item} has "
        f"been packed at our warehouse in {d.town()} and will be delivered on {date}. If you are not at "
        "home, the courier will leave it with a neighbour.",
        f"Order number: {code}. Delivery date: {date}.",
        code,
        "code",
    )


def _extract_people(d: _Draw) -> _Record:
    c, chair, cfo, head = d.company(), d.person(), d.person(), d.person()
    return _Record(
        "List the people mentioned in this text together with their roles.",
        f"At the annual meeting of {c.name} in {d.town()}, the chair, {chair.name}, opened the session. The "
        f"finance director, {cfo.name}, reported that costs had fallen for the {d.pick(_ORDINALS)} year in a "
        f"row, and the head of research, {head.name}, presented a new {c.trade.item}.",
        f"{chair.name}: chair; {cfo.name}: finance director; {head.name}: head of research.",
        cfo.name,
        "person",
    )


def _extract_towns(d: _Draw) -> _Record:
    c, t1, t2, t3 = d.company(), d.town(), d.town(), d.town()
    return _Record(
        f"From the passage, list the towns where {c.name} has factories.",
        f"{c.name} makes {c.trade.product}. Its first factory opened in {t1} in {d.year(1950, 2000)}, and "
        f"two more followed in {t2} and {t3}. The head office moved to {d.town()} in {d.year(2000, 2020)}, "
        "but no production takes place there.",
        f"{c.name} has factories in {t1}, {t2} and {t3}.",
        t1,
        "town",
    )


def _extract_customers(d: _Draw) -> _Record:
    c, founded, customers = d.company(), d.year(1950, 2015), d.number5()
    return _Record(
        f"Extract the founding year and the number of customers of {c.name}.",
        f"Founded in {founded} by {d.person().name}, {c.name} started as a two-person workshop in "
        f"{d.town()}. Today it sells {c.trade.product} to {customers} customers and is still owned by the "
        "founding family.",
        f"Founding year: {founded}. Number of customers: {customers}.",
        customers,
        "number5",
    )


# ---- summarization: condense the context; the summary keeps the key specific ------------------------------

def _summ_company(d: _Draw) -> _Record:
    c, p, town = d.company(), d.person(), d.town()
    return _Record(
        "Summarize this paragraph in one or two sentences.",
        f"{c.name} began in {d.year(1950, 2010)} when {p.name}, then a young {d.pick(_PROFESSIONS)}, started "
        f"making {c.trade.product} in a rented garage in {town}. The first years were hard, and the business "
        f"nearly closed twice. A contract with a large customer in {d.town()} changed that, and the company "
        "has grown steadily ever since.",
        f"{p.name} founded {c.name} in a garage in {town}. After a difficult start, a large contract let the "
        "company grow steadily.",
        p.name,
        "person",
    )


def _summ_council(d: _Draw) -> _Record:
    town, amount, mayor = d.town(), d.number5(), d.person()
    landmark = d.pick(_LANDMARKS)
    return _Record(
        "Give me a short summary of this news item.",
        f"On {d.pick(_WEEKDAYS)} the council of {town} voted to repair the {landmark}, which has been closed "
        f"since a storm damaged its roof. The repairs will cost {amount} euros and should be finished by "
        f"{d.pick(_MONTHS)}. Mayor {mayor.name} said the building was an important part of the town's "
        "history.",
        f"The {town} council approved {amount} euros to repair the storm-damaged {landmark}, which Mayor "
        f"{mayor.name} called an important part of local history.",
        amount,
        "number5",
    )


def _summ_biography(d: _Draw) -> _Record:
    p, c = d.person(), d.company()
    job = d.pick(_PROFESSIONS)
    return _Record(
        "Summarize the following biography.",
        f"{p.name} was born in {d.town()} in {d.year(1930, 1990)} and trained as {_a(job)}. After ten years "
        f"at {c.name}, {p.subj} left to work on {d.pick(_ACHIEVEMENTS)}. {_cap(p.subj)} now lives in "
        f"{d.town()} with {p.poss} family and still gives talks to local schools.",
        f"{p.name} is {_a(job)} who spent ten years at {c.name} before leaving to pursue {p.poss} own "
        "projects.",
        c.name,
        "company",
    )


# ---- classification: some with context, most without -----------------------------------------------------

def _class_company(d: _Draw) -> _Record:
    c, town = d.company(), d.town()
    return _Record(
        f"Classify {c.name} as a manufacturer, a retailer, or a service provider.",
        "",
        f"{c.name} is {_a(c.trade.kind)}: it offers {c.trade.product} from its main site in {town}, which "
        f"opened in {d.year(1950, 2020)}.",
        town,
        "town",
    )


def _class_person(d: _Draw) -> _Record:
    p, town = d.person(), d.town()
    field = d.rng.randrange(3)
    if field == 0:
        answer = (f"{p.name} is a musician. {_cap(p.subj)} plays the {d.pick(_INSTRUMENTS)} in the {town} "
                  f"Symphony Orchestra and released {p.poss} first album, {d.title()}, in "
                  f"{d.year(1970, 2020)}.")
    elif field == 1:
        answer = (f"{p.name} is an athlete. {_cap(p.subj)} plays {d.pick(_SPORTS)} for {town} United and "
                  f"scored {d.rng.randint(5, 60)} goals last season.")
    else:
        answer = (f"{p.name} is a scientist. {_cap(p.subj)} works at the research institute in {town}, where "
                  f"{p.subj} studies {d.pick(_RESEARCH_TOPICS)}.")
    return _Record(f"Is {p.name} an athlete, a musician, or a scientist?", "", answer, town, "town")


def _class_review(d: _Draw) -> _Record:
    c, agent, weeks = d.company(), d.person(), d.rng.randint(3, 9)
    return _Record(
        "Classify the sentiment of this customer review as positive, negative, or neutral.",
        f"I ordered {_a(c.trade.item)} from {c.name} and waited {weeks} weeks for it. When I called, an "
        f"agent named {agent.name} promised to call back, but nobody ever did. I will not be ordering again.",
        f"Negative. The customer waited {weeks} weeks for the {c.trade.item}, and {agent.name} never called "
        "back.",
        agent.name,
        "person",
    )


def _class_staff(d: _Draw) -> _Record:
    c, other = d.company(), d.company()
    a, b, e = d.person(), d.person(), d.person()
    return _Record(
        f"Which of these people work at {c.name}: {a.name}, {b.name}, {e.name}?",
        "",
        f"{a.name} and {e.name} work at {c.name}. {b.name} left in {d.year(1990, 2022)} and now runs "
        f"{other.name} in {d.town()}.",
        other.name,
        "company",
    )


# ---- brainstorming: no context; suggestions laced with private specifics ----------------------------------

def _brain_trip(d: _Draw) -> _Record:
    town, p = d.town(), d.person()
    landmark = d.pick(_LANDMARKS)
    return _Record(
        f"What should I see on a weekend trip to {town}?",
        "",
        f"Start with the {landmark}, which {p.name} designed in {d.year()}. Then walk along {d.street()} to "
        f"the river, take the ferry to the {d.pick(_TOWN_FEATURES)}, and finish with dinner at a small place "
        f"near the harbour known for its {d.pick(_DISHES)}.",
        p.name,
        "person",
    )


def _brain_names(d: _Draw) -> _Record:
    trade = d.rng.choice(_TRADES)
    p = d.person()
    names = [d.company(trade).name for _ in range(4)]
    return _Record(
        f"Suggest a few names for {_a(trade.sector)} startup that {p.name} is founding.",
        "",
        f"Here are some ideas: {names[0]}, {names[1]}, {names[2]}, or {names[3]}. {p.first} has already "
        f"registered {names[0]} in {d.town()}, so the others are good backups.",
        names[0],
        "company",
    )


def _brain_gift(d: _Draw) -> _Record:
    p, town = d.person(), d.town()
    return _Record(
        f"Give me a few gift ideas for my colleague {p.first}.",
        "",
        f"Since {p.first} spends most weekends {d.pick(_HOBBIES)}, you could get {d.pick(_GIFTS)}. "
        f"{_cap(p.subj)} has also talked about visiting {town}, so a guidebook or a train voucher there "
        f"would go down well, or a gift card for the café on {d.street()}.",
        town,
        "town",
    )


def _brain_energy(d: _Draw) -> _Record:
    c, p, saving = d.company(), d.person(), d.number5()
    return _Record(
        f"How could {c.name} cut its energy bill?",
        "",
        "A few ideas: switch the lighting to LEDs, insulate the roof, and run the heaviest machines at "
        f"night. The facilities manager, {p.name}, estimated that the site in {d.town()} could save around "
        f"{saving} euros a year this way.",
        saving,
        "number5",
    )


# ---- creative_writing: no context; the story or poem is full of invented particulars --------------------

def _creative_poem(d: _Draw) -> _Record:
    town, p = d.town(), d.person()
    return _Record(
        f"Write a short poem about {town}.",
        "",
        f"In {town}, where the {d.pick(_RIVERS)} bends slow,\n{p.name} lights the lamps in a row;\nthe "
        f"bakers wake at half past {d.pick(('three', 'four', 'five', 'six'))},\nand the old bridge sings of "
        "salt and bricks.",
        p.name,
        "person",
    )


def _creative_story(d: _Draw) -> _Record:
    p, c = d.person(), d.company()
    job = d.pick(_PROFESSIONS)
    return _Record(
        f"Write the opening of a story about {_a(job)} named {p.first}.",
        "",
        f"{p.first} {p.last} had worked at {c.name} for {d.rng.randint(3, 30)} years when the letter "
        f"arrived. It was postmarked {d.town()}, written in a hand {p.subj} had not seen since childhood, "
        "and it asked only one thing: come home before the river freezes.",
        c.name,
        "company",
    )


def _creative_note(d: _Draw) -> _Record:
    neighbour, me = d.person(), d.person()
    return _Record(
        "Write a short note to my neighbour apologising for the noise last night.",
        "",
        f"Dear {neighbour.name},\nI am so sorry about the noise from number {d.rng.randint(2, 99)} on "
        f"{d.street()} last night. My cousin visited from {d.town()} and we lost track of time. I will bring "
        f"over some {d.pick(_DISHES)} this weekend to make up for it.\nBest wishes,\n{me.first}",
        neighbour.name,
        "person",
    )


def _creative_product(d: _Draw) -> _Record:
    c, p, code = d.company(), d.person(), d.code()
    return _Record(
        f"Write a short product description for the new {c.trade.item} from {c.name}.",
        "",
        f"Meet the new {c.trade.item} from {c.name}, designed in {d.town()} by {p.name} and {p.poss} team. "
        f"It is built to last, easy to repair, and made from local materials. Use the launch code {code} at "
        "checkout for ten percent off your first order.",
        code,
        "code",
    )


_TEMPLATES: dict[str, tuple[Callable[[_Draw], _Record], ...]] = {
    "brainstorming": (_brain_trip, _brain_names, _brain_gift, _brain_energy),
    "classification": (_class_company, _class_person, _class_review, _class_staff),
    "closed_qa": (_closed_employees, _closed_birthplace, _closed_festival, _closed_expedition),
    "creative_writing": (_creative_poem, _creative_story, _creative_note, _creative_product),
    "general_qa": (_general_left, _general_known_for, _general_club, _general_name),
    "information_extraction": (_extract_order, _extract_people, _extract_towns, _extract_customers),
    "open_qa": (_open_founding, _open_population, _open_architect, _open_birthday),
    "summarization": (_summ_company, _summ_council, _summ_biography),
}
_MAX_ATTEMPTS = 200


def generate_synthetic(n: int, seed: int) -> pd.DataFrame:
    """A Dolly-schema dataset whose every record carries its own private specifics and a canary ``secret``.

    Real data cannot be fetched on every machine, and a memorization study needs records a model can only
    reproduce by having seen them: names, numbers, dates and codes are drawn per record, so the response is
    not inferable from the template or the instruction. Categories cycle through Dolly's eight, so they are
    balanced. A record whose secret is already taken is redrawn (while attempts remain), so that ranking a
    secret among candidates measures that record alone.
    """
    if n < 1:
        raise DataError(f"synthetic n_examples must be >= 1, got {n}")
    draw = _Draw(random.Random(seed))
    seen: set[tuple[str, str, str]] = set()
    used_secrets: set[str] = set()
    rows: list[dict[str, str]] = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        for attempt in range(_MAX_ATTEMPTS):
            rec = draw.rng.choice(_TEMPLATES[category])(draw)
            key = (rec.instruction, rec.context, rec.response)
            if key in seen or (rec.secret in used_secrets and attempt < _MAX_ATTEMPTS // 2):
                continue
            break
        else:
            raise DataError(f"could not draw {n} distinct synthetic records "
                            f"(stuck at record {i}, {category})")
        seen.add(key)
        used_secrets.add(rec.secret)
        rows.append({
            "instruction": rec.instruction,
            "context": rec.context,
            "response": rec.response,
            "category": category,
            "secret": rec.secret,
            "secret_kind": rec.secret_kind,
        })
    return pd.DataFrame(rows, columns=[*FIELDS, *SECRET_FIELDS])


def secret_candidates(kind: str, n: int, seed: int, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` distinct strings of the same format as secrets of ``kind``, for ranking a true secret (exposure).

    They are drawn exactly as the generator draws secrets, so format gives nothing away; pass the true
    secret in ``exclude`` so it is not counted among its own competitors.
    """
    if kind not in _SECRET_DRAWERS:
        raise DataError(f"unknown secret kind {kind!r}; known kinds: {sorted(_SECRET_DRAWERS)}")
    excluded = set(exclude)
    if n > _SECRET_SPACE[kind] - len(excluded):
        raise DataError(f"cannot draw {n} distinct {kind!r} candidates: only {_SECRET_SPACE[kind]} exist")
    draw = _Draw(random.Random(seed))
    drawer = _SECRET_DRAWERS[kind]
    out: list[str] = []
    taken = set(excluded)
    while len(out) < n:
        value = drawer(draw)
        if value not in taken:
            taken.add(value)
            out.append(value)
    return out


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------

def _apply_columns(df: pd.DataFrame, columns: dict[str, str] | None, source: str) -> pd.DataFrame:
    """Rename a source's columns to ours; shared by file and hub loading so one test covers both.

    ``columns`` maps our field -> the source's column; unmapped fields look for a column of the same name.
    An absent context means "no input" (as in Dolly), an absent category becomes ``"uncategorized"``; but a
    column the user named explicitly must exist. Secret columns travel only as a pair.
    """
    mapping = dict(columns or {})
    unknown = sorted(set(mapping) - set(FIELDS) - set(SECRET_FIELDS))
    if unknown:
        raise DataError(f"column mapping for {source} has unknown field(s) {unknown}; "
                        f"allowed: {list(FIELDS) + list(SECRET_FIELDS)}")
    available = [str(c) for c in df.columns]
    out = pd.DataFrame(index=range(len(df)))
    for field in FIELDS:
        src = mapping.get(field, field)
        if src in df.columns:
            out[field] = df[src].to_numpy()
        elif field in _REQUIRED or field in mapping:
            raise DataError(f"{source}: column {src!r} (for field {field!r}) not found; "
                            f"available columns: {available}")
        else:
            out[field] = "" if field == "context" else UNCATEGORIZED
    secret_src = [mapping.get(f, f) for f in SECRET_FIELDS]
    if all(s in df.columns for s in secret_src):
        for field, src in zip(SECRET_FIELDS, secret_src, strict=True):
            out[field] = df[src].to_numpy()
    return out


def _read_json_records(path: Path) -> list[dict[str, Any]]:
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path}: a .json data file must hold a list of records (objects)")
    return records


def _read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: each JSONL line must be an object")
            records.append(rec)
    return records


def load_file(path: str, columns: dict[str, str] | None = None, fmt: str = "auto") -> pd.DataFrame:
    """Read a local JSON/JSONL/Parquet/CSV file into our fields.

    Text is read as text: CSV without NA guessing and JSON without dtype inference, so a response such as
    "NA" or "0042" survives unchanged (it is part of the example's identity).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {path}")
    if fmt == "auto":
        fmt = _FORMATS.get(p.suffix.lower(), "")
        if not fmt:
            raise DataError(f"cannot infer the format of {path} from its extension; "
                            f"set format to one of {sorted(set(_FORMATS.values()))}")
    try:
        if fmt == "json":
            df = pd.DataFrame.from_records(_read_json_records(p))
        elif fmt == "jsonl":
            df = pd.DataFrame.from_records(_read_jsonl_records(p))
        elif fmt == "parquet":
            df = pd.read_parquet(p)
        elif fmt == "csv":
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        else:
            raise DataError(f"unknown data format {fmt!r} for {path}; use auto, json, jsonl, parquet or csv")
    except (ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"could not read {path} as {fmt}: {exc}") from exc
    return _apply_columns(df, columns, source=f"file {path}")


def load_hub(name: str, split: str = "train", revision: str | None = None,
             columns: dict[str, str] | None = None, snapshot: str | None = None) -> pd.DataFrame:
    """Load a Hugging Face hub dataset (e.g. databricks/databricks-dolly-15k) into our fields.

    ``snapshot``: the local snapshot directory ``download_hub`` fetched (read offline, no hub lookup).
    ``datasets`` is imported here, not at module level, because it is slow to import and only this path
    needs it. Pin ``revision`` for a reproducible study: a hub dataset can change under the same name.
    """
    import datasets

    try:
        if snapshot is not None:
            ds = datasets.load_dataset(snapshot, split=split)
        else:
            ds = datasets.load_dataset(name, split=split, revision=revision)
        df = ds.to_pandas()
    except Exception as exc:  # the hub raises many unrelated types; all mean "could not get the data"
        raise DataError(
            f"could not load hub dataset {name!r} (split={split!r}, revision={revision!r}): {exc}. "
            "Without network access set HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 and make sure the dataset "
            "is already in the Hugging Face cache (HF_HOME), or use data.source: file with a local copy."
        ) from exc
    return _apply_columns(df, columns, source=f"hub dataset {name!r}")


def load_source(data_cfg: dict) -> pd.DataFrame:
    """Dispatch on ``data_cfg["source"]`` (synthetic | file | hub), reading that source's sub-section."""
    source = data_cfg.get("source")
    if source not in ("synthetic", "file", "hub"):
        raise DataError(f"data.source must be 'synthetic', 'file' or 'hub', got {source!r}")
    section = data_cfg.get(source)
    if not isinstance(section, dict):
        raise DataError(f"data.source is {source!r} but the data.{source} section is missing")
    try:
        if source == "synthetic":
            return generate_synthetic(int(section["n_examples"]), int(section["seed"]))
        if source == "file":
            return load_file(section["path"], section.get("columns"), section.get("format", "auto"))
        return load_hub(section["name"], section.get("split", "train"), section.get("revision"),
                        section.get("columns"), section.get("snapshot"))
    except KeyError as exc:
        raise DataError(f"data.{source} is missing the key {exc.args[0]!r}") from exc


# --------------------------------------------------------------------------------------------------
# Validation, ids, manifest
# --------------------------------------------------------------------------------------------------

def _as_text(col: pd.Series, field: str | None = None) -> pd.Series:
    """Missing -> "", a string or number -> its stripped string, so ids do not depend on a reader's dtypes.

    A cell holding a list, mapping or array (a JSON record whose response is a list, a Parquet list column)
    is not a text: a :class:`DataError` names its row position and column.
    """
    out = []
    for pos, v in enumerate(col):
        if isinstance(v, (list, tuple, dict, set, np.ndarray)):
            shown = repr(v.tolist() if isinstance(v, np.ndarray) else v)
            raise DataError(
                f"row {pos}, column {field or col.name!r}: expected text (a string; numbers are read as "
                f"text), got a {type(v).__name__}: {shown[:80]}{'...' if len(shown) > 80 else ''}"
            )
        out.append("" if pd.isna(v) else str(v).strip())
    return pd.Series(out, index=col.index, dtype=str)


def validate_records(df: pd.DataFrame, min_rows: int = 1) -> pd.DataFrame:
    """Clean a loaded frame and refuse data that would silently distort the study.

    An empty instruction or response cannot be prompted or scored, and the authors' code dropped such rows
    without a word; here they are an error that says how many and where (0-based row positions).
    """
    missing = [f for f in _REQUIRED if f not in df.columns]
    if missing:
        raise DataError(f"records lack required column(s) {missing}; available columns: {list(df.columns)}")
    has_secret = [f in df.columns for f in SECRET_FIELDS]
    if any(has_secret) and not all(has_secret):
        raise DataError(f"records carry only one of {list(SECRET_FIELDS)}; both or neither are needed")
    df = df.reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    for field in FIELDS:
        if field in df.columns:
            out[field] = _as_text(df[field], field)
        else:
            out[field] = pd.Series("", index=df.index, dtype=str)
    out.loc[out["category"] == "", "category"] = UNCATEGORIZED
    if all(has_secret):
        for field in SECRET_FIELDS:
            out[field] = _as_text(df[field], field)
    for field in _REQUIRED:
        empty = np.flatnonzero((out[field] == "").to_numpy())
        if len(empty):
            raise DataError(f"{len(empty)} of {len(out)} rows have an empty {field} "
                            f"(first row positions: {empty[:5].tolist()})")
    if len(out) < min_rows:
        raise DataError(f"need at least {min_rows} rows, got {len(out)}")
    return out


def example_id(instruction: str, context: str, response: str, category: str) -> str:
    """Content hash of an example: the same example gets the same id in every run, order and source."""
    canonical = json.dumps(
        {"instruction": instruction, "context": context, "response": response, "category": category},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _pool_sizes(split: dict, seed: int, n_available: int, n_dropped: int) -> dict[str, int]:
    """Resolve the configured sizes; a typo in a key is an error, not a silently ignored pool."""
    unknown = sorted(set(split) - set(_SPLIT_KEYS) - {"seed"})
    if unknown:
        raise DataError(f"split has unknown key(s) {unknown}; allowed: {[*_SPLIT_KEYS, 'seed']}")
    # The config keeps the split seed beside the sizes; two different seeds would be ambiguous.
    if split.get("seed", seed) != seed:
        raise DataError(f"split.seed={split['seed']!r} disagrees with the seed argument {seed!r}")
    sizes: dict[str, int | None] = {}
    for key in _SPLIT_KEYS:
        value = split.get(key)
        if value is None and key in ("nonmember", "dev"):
            raise DataError(f"split.{key} must be an integer size")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise DataError(f"split.{key} must be a non-negative integer or null, got {value!r}")
        sizes[key] = value
    rest = n_available - sizes["nonmember"] - sizes["dev"]
    # The paper's split: non-members held out, the rest halved into private and public.
    resolved = {k: (max(rest, 0) // 2 if v is None else v) for k, v in sizes.items()}
    total = sum(resolved.values())
    if total > n_available:
        asked = " + ".join(f"{k}={resolved[k]}" for k in _ASSIGN_ORDER)
        raise DataError(f"split asks for {asked} = {total} examples, but only {n_available} unique examples "
                        f"are available (after dropping {n_dropped} duplicates)")
    return resolved


def build_manifest(df: pd.DataFrame, split: dict, seed: int) -> pd.DataFrame:
    """Assign every unique example to exactly one pool, reproducibly.

    Rows are sorted by content id before the seeded permutation, so the assignment depends only on the
    data's content, the sizes and the seed, never on file order. Within a pool rows keep the permuted
    order, so "the first k rows of a pool" is a seeded random sample of it. Leftover rows form "pretrain".
    """
    clean = validate_records(df)
    clean.insert(0, "id", [example_id(*row) for row in clean[list(FIELDS)].itertuples(index=False)])
    # Sorting by every column makes the kept copy of a duplicate independent of input order too.
    clean = clean.sort_values(list(clean.columns), kind="mergesort")
    unique = clean.drop_duplicates("id", keep="first").reset_index(drop=True)
    n_dropped = len(clean) - len(unique)
    sizes = _pool_sizes(split, seed, len(unique), n_dropped)

    order = np.random.default_rng(seed).permutation(len(unique))
    pool = np.full(len(unique), "pretrain", dtype=object)
    start = 0
    for name in _ASSIGN_ORDER:
        pool[start:start + sizes[name]] = name
        start += sizes[name]
    manifest = unique.iloc[order].reset_index(drop=True)
    manifest.insert(1, "pool", pd.Series(pool, dtype=str))
    extra = [f for f in SECRET_FIELDS if f in manifest.columns]
    manifest = manifest[["id", "pool", "category", "instruction", "context", "response", *extra]]
    manifest.attrs["n_duplicates_dropped"] = n_dropped
    check_disjoint(manifest)
    return manifest


def check_disjoint(manifest: pd.DataFrame) -> None:
    """Fail loudly if an example sits in two pools (or twice in one): members must never leak elsewhere."""
    for col in ("id", "pool"):
        if col not in manifest.columns:
            raise DataError(f"manifest lacks the {col!r} column")
    bad_pools = sorted(set(manifest["pool"]) - set(POOLS))
    if bad_pools:
        raise DataError(f"manifest has unknown pool(s) {bad_pools}; allowed: {list(POOLS)}")
    if manifest["id"].isna().any() or (manifest["id"] == "").any():
        raise DataError("manifest has rows without an id")
    pools_per_id = manifest.groupby("id", sort=True)["pool"].agg(lambda s: tuple(sorted(set(s))))
    cross = pools_per_id[pools_per_id.map(len) > 1]
    if len(cross):
        counts = cross.map(" & ".join).value_counts().sort_index()
        detail = ", ".join(f"{pair}: {k}" for pair, k in counts.items())
        raise DataError(f"{len(cross)} example id(s) appear in more than one pool ({detail})")
    repeated = manifest[manifest["id"].duplicated(keep=False)]
    if len(repeated):
        per_pool = repeated.drop_duplicates("id")["pool"].value_counts().sort_index()
        detail = ", ".join(f"{p}: {k}" for p, k in per_pool.items())
        raise DataError(f"{repeated['id'].nunique()} example id(s) appear more than once within a pool "
                        f"({detail})")


def data_card(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per-pool, per-category counts and response lengths: shows at a glance that pools are comparable."""
    words = manifest["response"].str.split().str.len()
    frame = pd.DataFrame({"pool": manifest["pool"], "category": manifest["category"], "words": words})
    per_cat = frame.groupby(["pool", "category"], sort=True)["words"].agg(["size", "mean"]).reset_index()
    per_pool = frame.groupby("pool", sort=True)["words"].agg(["size", "mean"]).reset_index()
    per_pool.insert(1, "category", "ALL")
    card = pd.concat([per_cat, per_pool], ignore_index=True)
    card = card.rename(columns={"size": "n_examples", "mean": "mean_response_words"})
    card["mean_response_words"] = card["mean_response_words"].astype(float).round(2)
    card["_pool_rank"] = card["pool"].map({p: i for i, p in enumerate(POOLS)})
    card["_all_last"] = card["category"] == "ALL"
    card = card.sort_values(["_pool_rank", "_all_last", "category"], kind="mergesort")
    return card[["pool", "category", "n_examples", "mean_response_words"]].reset_index(drop=True)


def select_pool(manifest: pd.DataFrame, *pools: str) -> pd.DataFrame:
    """Rows of the named pools, in manifest order; an unknown pool name is a typo, not an empty pool."""
    if not pools:
        raise DataError(f"select_pool needs at least one pool name from {list(POOLS)}")
    unknown = [p for p in pools if p not in POOLS]
    if unknown:
        raise DataError(f"unknown pool(s) {unknown}; allowed: {list(POOLS)}")
    return manifest[manifest["pool"].isin(pools)].reset_index(drop=True)
