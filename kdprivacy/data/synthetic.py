"""The synthetic corpus: Dolly-schema records whose private specifics and canary ``secret`` are drawn per
record, so a model can only reproduce them by having seen them; and candidates of each secret's format for
ranking a true secret (exposure). Templates repeat by design: one per kind of instruction.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from kdprivacy.data import FIELDS, SECRET_FIELDS, DataError
from kdprivacy.data.vocabulary import (
    _ACHIEVEMENTS,
    _AWARDS,
    _CLUBS,
    _COUNTRIES,
    _DIRECTIONS,
    _DISHES,
    _FESTIVALS,
    _GIFTS,
    _HOBBIES,
    _INSTRUMENTS,
    _LANDMARKS,
    _MONTHS,
    _ORDINALS,
    _PROFESSIONS,
    _RESEARCH_TOPICS,
    _RIVERS,
    _SECRET_DRAWERS,
    _SECRET_SPACE,
    _SHOPS,
    _SPORTS,
    _TOWN_FEATURES,
    _TRADES,
    _WEEKDAYS,
    _Draw,
)

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
