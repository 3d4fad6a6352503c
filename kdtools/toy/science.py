"""Invented "science": animals, minerals and planets, for the ARC-style task.

The facts are stated in the pretraining corpus; ARC-style questions ask them back (directly, in
reverse, or as a comparison across four choices), so answering needs knowledge the base model
picked up in pretraining, as in ARC-Challenge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kdtools.toy.drawing import Item
from kdtools.toy.knowledge import COLORS, NameBank

FOODS = ("seeds", "fish", "leaves", "insects", "fruit", "grass")
HABITATS = ("desert", "forest", "ocean", "cave", "swamp", "mountains")
LEGS = ("two", "four", "six", "eight")
LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Science:
    animals: dict    # name -> {"eats", "habitat", "legs"}
    minerals: dict   # name -> {"color", "hardness" (distinct ints), "magnetic" (bool)}
    planets: dict    # name -> {"moons" (distinct ints), "color"}


def build_science(rng: random.Random, n_entities: int, bank: NameBank) -> Science:
    """About n/3 animals, n/5 minerals, n/8 planets (each at least 4, so 4-way choices exist)."""
    animals = {bank.word(): {"eats": rng.choice(FOODS), "habitat": rng.choice(HABITATS),
                             "legs": rng.choice(LEGS)} for _ in range(max(6, n_entities // 3))}
    n_min = max(4, n_entities // 5)
    hardness = rng.sample(range(1, 16), min(n_min, 15))
    minerals = {bank.word() + "ite": {"color": rng.choice(COLORS), "hardness": h,
                                      "magnetic": rng.random() < 0.3} for h in hardness}
    n_pl = max(4, n_entities // 8)
    planets = {bank.name(): {"moons": m, "color": rng.choice(COLORS)}
               for m in rng.sample(range(13), min(n_pl, 13))}
    return Science(animals, minerals, planets)


def statements(sci: Science) -> list[tuple[str, ...]]:
    """Every science fact, each as a tuple of its paraphrases (the corpus samples from these)."""
    out = []
    for a, p in sci.animals.items():
        out.append((f"The {a} eats {p['eats']}.", f"A {a} feeds on {p['eats']}."))
        out.append((f"The {a} lives in the {p['habitat']}.",
                    f"You can find the {a} in the {p['habitat']}."))
        out.append((f"A {a} has {p['legs']} legs.", f"The {a} walks on {p['legs']} legs."))
    for m, p in sci.minerals.items():
        name = m.capitalize()
        out.append((f"{name} is a {p['color']} mineral.", f"The mineral {m} is {p['color']}."))
        out.append((f"{name} has a hardness of {p['hardness']}.",
                    f"The hardness of {m} is {p['hardness']}."))
        magnetic = "magnetic" if p["magnetic"] else "not magnetic"
        out.append((f"{name} is {magnetic}.", f"The mineral {m} is {magnetic}."))
        for other, q in sci.minerals.items():
            if q["hardness"] < p["hardness"]:
                out.append((f"{name} is harder than {other}.",
                            f"{other.capitalize()} is softer than {m}."))
    for pl, p in sci.planets.items():
        out.append((f"The planet {pl} has {p['moons']} moons.",
                    f"{pl} is a planet with {p['moons']} moons."))
        out.append((f"{pl} is a {p['color']} planet.", f"The planet {pl} looks {p['color']}."))
    for kind, table, field in (("planet", sci.planets, "moons"),
                               ("mineral", sci.minerals, "hardness")):
        best = max(table, key=lambda x: table[x][field])
        word = "most moons" if kind == "planet" else "highest hardness"
        out.append((f"Of all {kind}s {best} has the {word}.",))
    return out


def mc_item(key: tuple, question: str, correct: str, wrong: list[str], rng: random.Random) -> Item:
    """A 4-way item; `extra` holds the shuffled choices, `answer` the correct letter."""
    choices = [correct] + wrong
    rng.shuffle(choices)
    return Item(key + (tuple(sorted(choices)),), question, LETTERS[choices.index(correct)],
                extra=(("choices", tuple(choices)),))


def science_question(sci: Science, rng: random.Random) -> Item:
    """One ARC-style question: direct, reverse lookup or comparison."""
    kind = rng.choice(("eats", "habitat", "legs", "which_habitat", "hardest", "softest",
                       "magnetic", "moons", "most_moons", "mineral_color"))
    animals, minerals, planets = sci.animals, sci.minerals, sci.planets
    if kind in ("eats", "habitat", "legs"):
        a = rng.choice(sorted(animals))
        value = animals[a][kind]
        pool = {"eats": FOODS, "habitat": HABITATS, "legs": LEGS}[kind]
        q = {"eats": f"What does the {a} eat?", "habitat": f"Where does the {a} live?",
             "legs": f"How many legs does a {a} have?"}[kind]
        return mc_item((kind, a), q, value, rng.sample(sorted(set(pool) - {value}), 3), rng)
    if kind == "which_habitat":
        a = rng.choice(sorted(animals))
        habitat = animals[a]["habitat"]
        others = sorted(b for b in animals if animals[b]["habitat"] != habitat)
        if len(others) < 3:
            return science_question(sci, rng)
        return mc_item((kind, a), f"Which animal lives in the {habitat}?", a,
                       rng.sample(others, 3), rng)
    if kind in ("hardest", "softest", "most_moons"):
        table, field = (planets, "moons") if kind == "most_moons" else (minerals, "hardness")
        four = rng.sample(sorted(table), 4)
        best = (min if kind == "softest" else max)(four, key=lambda x: table[x][field])
        q = {"hardest": "Which of these minerals is the hardest?",
             "softest": "Which of these minerals is the softest?",
             "most_moons": "Which of these planets has the most moons?"}[kind]
        return mc_item((kind,), q, best, [x for x in four if x != best], rng)
    if kind == "magnetic":
        yes = sorted(m for m in minerals if minerals[m]["magnetic"])
        no = sorted(m for m in minerals if not minerals[m]["magnetic"])
        if not yes or len(no) < 3:
            return science_question(sci, rng)
        return mc_item((kind,), "Which of these minerals is magnetic?", rng.choice(yes),
                       rng.sample(no, 3), rng)
    if kind == "moons":
        pl = rng.choice(sorted(planets))
        n = planets[pl]["moons"]
        wrong = rng.sample(sorted(set(range(13)) - {n}), 3)
        return mc_item((kind, pl), f"How many moons does the planet {pl} have?", str(n),
                       [str(w) for w in wrong], rng)
    m = rng.choice(sorted(minerals))
    color = minerals[m]["color"]
    return mc_item((kind, m), f"What color is the mineral {m}?", color,
                   rng.sample(sorted(set(COLORS) - {color}), 3), rng)
