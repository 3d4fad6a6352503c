"""The pretraining corpus: short plain-text documents (1-5 sentences, dialogues aside).

What a base model should know before tuning, written as prose rather than as questions: every
fact of the knowledge base in several paraphrases (each stated 40-150 times at the default
size), the science facts, the Amsi lexicon and some parallel sentences, prose
demonstrations of the symbolic skills, and dialogues with summaries. Items reserved by benchmarks
and tasks are never written here.
"""

from __future__ import annotations

import random

from kdtools.toy import operations as ops
from kdtools.toy.dialogues import dialogue
from kdtools.toy.knowledge import STATEMENTS, World
from kdtools.toy.language import LANGUAGE, VOCABULARY, Language, random_sentence
from kdtools.toy.science import Science, statements

# Document kind -> share. Knowledge dominates: it is what separates a big model from a small one.
KINDS = {"entity": 0.42, "science": 0.12, "language": 0.12, "skills": 0.28, "dialogue": 0.06}


def entity_doc(rng: random.Random, world: World) -> str:
    """Facts about one entity, sometimes followed by a fact about its city or country."""
    kind = rng.choice(sorted(world.names))
    e = rng.choice(world.names[kind])
    facts = rng.sample(world.facts_of(e), rng.randint(1, 3))
    if rng.random() < 0.4 and kind != "country":
        linked = world.fact(e, "home" if kind == "person" else "country").value
        facts.append(rng.choice(world.facts_of(linked)))
    return " ".join(f.statement(rng.randrange(len(STATEMENTS[f.attr]))) for f in facts)


def science_doc(rng: random.Random, facts: list[tuple[str, ...]]) -> str:
    return " ".join(rng.choice(rng.choice(facts)) for _ in range(rng.randint(1, 4)))


def language_doc(rng: random.Random, lang: Language, taken: set) -> str:
    if rng.random() < 0.6:
        words = rng.sample(VOCABULARY, rng.randint(1, 5))
        return " ".join(lang.lexicon_sentence(rng, w) for w in words)
    pairs, target = [], rng.randint(1, 3)
    while len(pairs) < target:
        s = random_sentence(rng)
        if s.key() not in taken:
            pairs.append(f'In {LANGUAGE} "{lang.translate(s)}" means "{s.english()}"')
    return " ".join(pairs)


def skill_sentence(rng: random.Random, taken: set) -> str:
    while True:
        kind = rng.choice(("arith", "list", "string"))
        item = {"arith": ops.arithmetic, "list": ops.list_op, "string": ops.string_op}[kind](rng)
        if item.key in taken:
            continue
        if kind == "arith":
            return ops.arithmetic_prose(*item.key[1:])
        if kind == "list":
            return ops.list_prose(item.key[1], item.key[2])
        return ops.string_prose(item)


def dialogue_doc(rng: random.Random, world: World, taken: set) -> str:
    while True:
        item = dialogue(rng, world.names["city"])
        if item.key not in taken:
            return f"{item.prompt}\nSummary: {item.answer}"


def build_corpus(seed: int, world: World, sci: Science, lang: Language, n: int,
                 taken: set) -> list[str]:
    """`n` documents in a seeded order; none states a reserved item."""
    rng = random.Random(f"{seed}:corpus")
    science_facts = statements(sci)
    kinds, weights = list(KINDS), list(KINDS.values())
    docs = []
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        if kind == "entity":
            docs.append(entity_doc(rng, world))
        elif kind == "science":
            docs.append(science_doc(rng, science_facts))
        elif kind == "language":
            docs.append(language_doc(rng, lang, taken))
        elif kind == "skills":
            docs.append(" ".join(skill_sentence(rng, taken) for _ in range(rng.randint(1, 4))))
        else:
            docs.append(dialogue_doc(rng, world, taken))
    return docs
