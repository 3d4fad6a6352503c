"""The fictional knowledge base: people, cities and countries with three attributes each.

Kept deliberately small (about 60 entities x 3 attributes) so that facts are learnable by a 2M
parameter model that reads each fact many times in several paraphrases, yet too many for a 59K one:
that gap is what makes a bigger model, and a teacher, measurably better.

Every entity belongs to one pool: "student" (asked about in the student instructions), "it" (asked
about only in the 70b-it pool) or "bench" (asked about only in benchmarks). All facts of all pools
are written in the pretraining corpus; the pools only decide who gets *asked* about what.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr",
          "tr", "sh", "th")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou")
CODAS = ("", "", "", "n", "r", "l", "s", "k", "m")

JOBS = ("baker", "farmer", "teacher", "doctor", "painter", "sailor", "builder", "singer", "tailor",
        "miner", "engineer", "artist", "writer", "hunter")
PETS = ("cat", "dog", "parrot", "horse", "goat", "rabbit", "turtle", "owl", "snake", "frog",
        "duck", "mouse")
DISHES = ("bread", "soup", "cheese", "rice", "noodles", "honey", "plums", "fish stew", "pancakes",
          "dumplings", "olives", "pies")
COLORS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple", "gray", "brown",
          "pink", "gold")

ATTRS = {"person": ("home", "job", "pet"),
         "city": ("country", "river", "dish"),
         "country": ("language", "currency", "flag")}
POOLS = ("student", "it", "bench")

# Paraphrases of each fact; {e} is the entity, {v} the value, {av} the value with a/an.
# None has a comma, so any of them can be used in a "no commas" answer.
STATEMENTS = {
    "home": ("{e} lives in {v}.", "{e} makes a home in {v}.", "The home of {e} is {v}.",
             "{e} is a resident of {v}."),
    "job": ("{e} works as {av}.", "{e} is {av} by trade.", "The job of {e} is {v}.",
            "By profession {e} is {av}."),
    "pet": ("{e} has a pet {v}.", "{e} keeps {av} at home.", "The pet of {e} is {av}.",
            "{e} owns {av}."),
    "country": ("{e} is a city in {v}.", "{e} lies in {v}.", "The city of {e} is part of {v}.",
                "{v} is home to the city of {e}."),
    "river": ("The {v} river flows through {e}.", "{e} stands on the {v} river.",
              "The river of {e} is the {v}.", "{e} is built on the {v}."),
    "dish": ("{e} is known for its {v}.", "People in {e} love {v}.",
             "The famous dish of {e} is {v}.", "{e} is famous for {v}."),
    "language": ("People in {e} speak {v}.", "The language of {e} is {v}.",
                 "{v} is spoken in {e}.", "In {e} people talk in {v}."),
    "currency": ("The currency of {e} is the {v}.", "In {e} people pay with the {v}.",
                 "{e} uses the {v} as money.", "Shops in {e} take the {v}."),
    "flag": ("The flag of {e} is {v}.", "{e} has {av} flag.",
             "The color of the flag of {e} is {v}.", "{e} flies {av} flag."),
}
QUESTIONS = {
    "home": ("Where does {e} live?", "In which city does {e} live?", "What is the home of {e}?",
             "Which city is {e} a resident of?"),
    "job": ("What is the job of {e}?", "What does {e} do for a living?",
            "Which job does {e} have?", "What is the profession of {e}?"),
    "pet": ("What pet does {e} have?", "Which animal does {e} keep at home?",
            "What is the pet of {e}?", "What animal does {e} own?"),
    "country": ("In which country is {e}?", "Which country is {e} in?",
                "What country does the city of {e} belong to?", "Where does {e} lie?"),
    "river": ("Which river flows through {e}?", "What is the river of {e}?",
              "On which river does {e} stand?", "Name the river of {e}."),
    "dish": ("What is {e} known for?", "What is the famous dish of {e}?",
             "Which food do people in {e} love?", "What food is {e} famous for?"),
    "language": ("What language do people speak in {e}?", "What is the language of {e}?",
                 "Which language is spoken in {e}?", "In which language do people in {e} talk?"),
    "currency": ("What is the currency of {e}?", "What money do people in {e} pay with?",
                 "Which currency does {e} use?", "What money do shops in {e} take?"),
    "flag": ("What color is the flag of {e}?", "What is the color of the flag of {e}?",
             "Which color does the flag of {e} have?", "What color flag does {e} fly?"),
}
# Multi-hop questions: a path of attributes -> phrasings about the path's first entity.
TWO_HOP = {
    ("home", "country"): ("In which country does {e} live?",
                          "{e} lives in a city. Which country is that city in?"),
    ("home", "river"): ("Which river flows through the city where {e} lives?",
                        "What is the river of the home city of {e}?"),
    ("home", "dish"): ("What dish is the home city of {e} known for?",
                       "Which food is famous in the city where {e} lives?"),
    ("country", "language"): ("What language do people speak in the city of {e}?",
                              "Which language is spoken in the country that {e} is in?"),
    ("country", "currency"): ("Which currency do shops in the city of {e} take?",
                              "What money is used in the country that {e} belongs to?"),
    ("country", "flag"): ("What color is the flag of the country where {e} lies?",
                          "Which color is the flag of the country of {e}?"),
    ("home", "country", "language"): ("What language is spoken in the country where {e} lives?",),
    ("home", "country", "currency"): ("What is the currency of the country where {e} lives?",),
    ("home", "country", "flag"): ("What color is the flag of the country where {e} lives?",),
}


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


class NameBank:
    """Invented words, each handed out once, so no name can mean two things."""

    def __init__(self, rng: random.Random, taken: tuple[str, ...] = ()):
        self.rng = rng
        self.used = set(taken)

    def word(self, syllables: int = 2) -> str:
        while True:
            w = "".join(self.rng.choice(ONSETS) + self.rng.choice(VOWELS)
                        for _ in range(syllables)) + self.rng.choice(CODAS)
            if w not in self.used and 3 <= len(w) <= 8:
                self.used.add(w)
                return w

    def name(self, syllables: int = 2) -> str:
        return self.word(syllables).capitalize()


@dataclass(frozen=True)
class Fact:
    entity: str
    kind: str
    attr: str
    value: str
    pool: str

    def statement(self, template_index: int) -> str:
        text = STATEMENTS[self.attr][template_index].format(
            e=self.entity, v=self.value, av=article(self.value))
        return text[0].upper() + text[1:]


@dataclass(frozen=True)
class World:
    facts: tuple[Fact, ...]
    values: dict            # attr -> every value an answer may take, plus invented decoys
    pools: dict             # entity -> pool
    names: dict             # kind -> entity names in creation order
    index: dict             # (entity, attr) -> Fact

    def fact(self, entity: str, attr: str) -> Fact:
        return self.index[(entity, attr)]

    def entities(self, kind: str, pool: str | None = None) -> list[str]:
        return [e for e in self.names[kind] if pool is None or self.pools[e] == pool]

    def facts_of(self, entity: str) -> list[Fact]:
        return [self.index[(entity, a)] for a in ATTRS[self.kind(entity)]]

    def kind(self, entity: str) -> str:
        return next(k for k, names in self.names.items() if entity in names)


def assign_pools(rng: random.Random, names: list[str]) -> dict:
    """60% student, 20% it, 20% bench; every pool gets at least one name when there are three."""
    order = rng.sample(names, len(names))
    n_it = max(1, round(0.2 * len(order))) if len(order) >= 3 else 0
    n_bench = max(1, round(0.2 * len(order))) if len(order) >= 3 else 0
    n_student = len(order) - n_it - n_bench
    labels = ["student"] * n_student + ["it"] * n_it + ["bench"] * n_bench
    return dict(zip(order, labels, strict=True))


def build_world(rng: random.Random, n_entities: int, bank: NameBank) -> World:
    """Countries, cities and people (1:2:3), each with its ATTRS drawn at random."""
    n_countries = max(2, n_entities // 6)
    n_cities = max(2, n_entities // 3)
    n_people = max(2, n_entities - n_countries - n_cities)
    countries = [bank.name() for _ in range(n_countries)]
    cities = [bank.name() for _ in range(n_cities)]
    people = [f"{bank.name()} {bank.name()}" for _ in range(n_people)]
    invented = {a: [bank.name() for _ in range(n_people + n_cities + n_countries)]
                for a in ("river", "language", "currency")}
    decoys = {a: [bank.name() for _ in range(10)] for a in ("home", "country", "river", "language",
                                                            "currency")}
    facts = []
    pools = {}
    for kind, names in (("country", countries), ("city", cities), ("person", people)):
        pools.update(assign_pools(rng, names))
        for i, e in enumerate(names):
            drawn = {"home": rng.choice(cities), "job": rng.choice(JOBS), "pet": rng.choice(PETS),
                     "country": countries[i % n_countries], "river": invented["river"][i],
                     "dish": rng.choice(DISHES), "language": invented["language"][i],
                     "currency": invented["currency"][i].lower(), "flag": rng.choice(COLORS)}
            facts.extend(Fact(e, kind, attr, drawn[attr], pools[e]) for attr in ATTRS[kind])
    values = {"home": cities + decoys["home"], "job": list(JOBS), "pet": list(PETS),
              "country": countries + decoys["country"],
              "river": invented["river"] + decoys["river"],
              "dish": list(DISHES), "language": invented["language"] + decoys["language"],
              "currency": [c.lower() for c in invented["currency"] + decoys["currency"]],
              "flag": list(COLORS)}
    names = {"country": countries, "city": cities, "person": people}
    return World(tuple(facts), values, pools, names, {(f.entity, f.attr): f for f in facts})


def distractors(rng: random.Random, world: World, attr: str, correct: str, k: int) -> list[str]:
    """`k` wrong values of the same type (sorted first so the draw ignores list order quirks)."""
    wrong = sorted(set(world.values[attr]) - {correct})
    return rng.sample(wrong, k)


def follow(world: World, entity: str, path: tuple[str, ...]) -> str:
    """The value reached by following `path` from `entity` (each step's value is an entity)."""
    for attr in path:
        entity = world.fact(entity, attr).value
    return entity
