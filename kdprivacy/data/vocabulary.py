"""Word lists and the seeded drawer of the synthetic generator (:mod:`kdprivacy.data.synthetic`).

Package-internal: the templates and the secret candidates draw every name, number, date and code through
:class:`_Draw`, so one seed fixes a whole synthetic corpus.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# Word lists for the synthetic generator. Sizes matter: a record's private specifics (names, companies,
# towns, numbers, dates, codes) must come from spaces large enough that a model cannot guess them from
# the template, and that every record's secret is (almost always) its own.

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
