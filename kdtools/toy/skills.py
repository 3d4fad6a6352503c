"""The toy "Tulu 3": instruction rows mixing every skill the benchmarks and tasks test.

One instruction pool is drawn per audience: "student" (the pool every model is SFT'd and
distilled on) and "it" (only the 70b-it teacher is tuned on it). Both use the same skills; the
knowledge skills ask about each pool's own entities and every other item is kept out of the
other pool by key, so the 70b-it really has seen more. Benchmark and task keys are forbidden in
both. Rows follow the Tulu 3 SFT mixture schema: {"id", "messages", "source"}.
"""

from __future__ import annotations

import random

from kdtools.errors import KdError
from kdtools.tasks import mc_prompt
from kdtools.toy import operations as ops
from kdtools.toy.benchmarks import (
    fact_question,
    list_options,
    list_question,
    numeric_options,
    two_hop_question,
    with_options,
)
from kdtools.toy.constraints import ifeval_item, infobench_item, infobench_prompt
from kdtools.toy.dialogues import dialogue
from kdtools.toy.drawing import Item
from kdtools.toy.knowledge import World
from kdtools.toy.language import Language
from kdtools.toy.science import Science, science_question
from kdtools.toy.tasks import (
    arc_row,
    summarization_row,
    task_prompt,
    translation_item,
    translation_row,
)

# Skill -> share of single-turn rows. Lists carry most of the learnable signal at this scale
# (see the calibration note), knowledge the most of the teacher-student gap.
WEIGHTS = {"fact_qa": 0.20, "two_hop": 0.05, "arithmetic": 0.10, "arith_chain": 0.03,
           "list_ops": 0.14, "list_chain": 0.04, "string_ops": 0.08, "string_chain": 0.02,
           "multiple_choice": 0.08, "writing": 0.08, "requirements": 0.05, "translation": 0.05,
           "summary": 0.04, "science": 0.04}
TWO_TURN_SHARE = 0.10
SYSTEM_SHARE = 0.05
SYSTEMS = ("You are a helpful assistant.", "You are a concise assistant. Answer briefly.",
           "You are a friendly tutor.")
MAX_ROW_CHARS = 600


def multiple_choice(rng: random.Random, world: World, pool: str) -> Item:
    """The benchmarks' MC layout on pool items: 4 options (GPQA-like) or 10 (MMLU-Pro-like).

    The key is the underlying item's key, so an MC item and its open form count as one item.
    """
    k = rng.choice((4, 10))
    kind = rng.choice(("fact", "two_hop", "arith", "list"))
    if kind in ("fact", "two_hop"):
        item = (fact_question(rng, world, pool) if kind == "fact"
                else two_hop_question(rng, world, (pool,)))
        options, at = with_options(rng, world, item, k)
    elif kind == "arith":
        item = ops.arithmetic(rng)
        options, at = numeric_options(rng, int(item.answer), k)
    else:
        item = list_question(rng)
        options, at = list_options(rng, item)
        if k == 4:  # keep the answer and three others, order preserved
            keep = sorted([at] + rng.sample([i for i in range(10) if i != at], 3))
            options, at = [options[i] for i in keep], keep.index(at)
    return Item(item.key, mc_prompt(item.prompt, options), "ABCDEFGHIJ"[at])


def skill_makers(world: World, sci: Science, lang: Language, pool: str) -> dict:
    """Skill name -> maker(rng) -> Item with the final user prompt and assistant answer."""
    entities = sorted(e for kind in world.names for e in world.entities(kind, pool))
    people = world.entities("person", pool)

    def writing(rng):
        return ifeval_item(rng, world, entities)

    def requirements(rng):
        item = infobench_item(rng, world, people)
        row = {"instruction": item.prompt, "input": dict(item.extra)["input"]}
        return Item(item.key, infobench_prompt(row), item.answer)

    def translation(rng):
        item = translation_item(rng, lang)
        return Item(item.key, *task_prompt("translation", translation_row(0, item)))

    def summary(rng):
        item = dialogue(rng, world.names["city"])
        return Item(item.key, *task_prompt("summarization", summarization_row("x", item)))

    def science(rng):
        item = science_question(sci, rng)
        return Item(item.key, *task_prompt("arc", arc_row("x", item)))

    return {"fact_qa": lambda rng: fact_question(rng, world, pool),
            "two_hop": lambda rng: two_hop_question(rng, world, (pool,)),
            "arithmetic": ops.arithmetic, "arith_chain": ops.arithmetic_chain,
            "list_ops": ops.list_op, "list_chain": ops.list_chain,
            "string_ops": ops.string_op, "string_chain": ops.string_chain,
            "multiple_choice": lambda rng: multiple_choice(rng, world, pool),
            "writing": writing, "requirements": requirements, "translation": translation,
            "summary": summary, "science": science}


def build_instructions(seed: int, world: World, sci: Science, lang: Language, pool: str, n: int,
                       forbidden: set, first_id: int = 0) -> tuple[list[dict], set]:
    """`n` rows for `pool`, none using a forbidden key; returns (rows, keys used).

    Items may repeat within a pool (a fact asked twice, in two phrasings or the same one), as in a
    real SFT mix; they never cross into the other pool or the held-out sets.
    """
    rng = random.Random(f"{seed}:instructions:{pool}")
    makers = skill_makers(world, sci, lang, pool)
    names = list(WEIGHTS)
    weights = [WEIGHTS[s] for s in names]

    def turn() -> tuple[str, Item]:
        for _ in range(2000):
            skill = rng.choices(names, weights)[0]
            item = makers[skill](rng)
            if item.key not in forbidden:
                return skill, item
        raise KdError(f"the {pool} instruction pool ran out of items: raise n_entities")

    rows: list[dict] = []
    used: set = set()
    while len(rows) < n:
        messages = []
        if rng.random() < SYSTEM_SHARE:
            messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
        turns = [turn() for _ in range(2 if rng.random() < TWO_TURN_SHARE else 1)]
        for _, item in turns:
            messages += [{"role": "user", "content": item.prompt},
                         {"role": "assistant", "content": item.answer}]
        if sum(len(m["content"]) for m in messages) > MAX_ROW_CHARS:
            continue
        used.update(item.key for _, item in turns)
        skill = turns[0][0]
        rows.append({"id": f"toy_{skill}_{first_id + len(rows)}", "messages": messages,
                     "source": f"toy/{skill}"})
    return rows, used
