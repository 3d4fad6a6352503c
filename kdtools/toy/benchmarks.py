"""The toy general benchmarks: BBH, GPQA, MMLU-Pro, IFEval and InFoBench, in their real schemas.

Fact questions and writing prompts are about "bench" entities only: none is named in a question
of any instruction pool, yet their facts are in the pretraining corpus. Multi-hop and symbolic
items are held-out combinations of the instruction skills. Every key drawn here is added to the
caller's reserved set, so that instructions and the corpus avoid them.
"""

from __future__ import annotations

import random

from kdtools.toy import operations as ops
from kdtools.toy.constraints import ifeval_item, infobench_item
from kdtools.toy.drawing import Item, draw
from kdtools.toy.knowledge import POOLS, QUESTIONS, TWO_HOP, World, distractors, follow

LETTERS = "ABCDEFGHIJ"


def fact_question(rng: random.Random, world: World, pool: str) -> Item:
    """A one-hop question about an entity of `pool`; extra = (attr,)."""
    kind = rng.choice(("person", "person", "city", "country"))
    names = world.entities(kind, pool) or world.entities("person", pool)
    fact = rng.choice(world.facts_of(rng.choice(names)))
    q = rng.choice(QUESTIONS[fact.attr]).format(e=fact.entity)
    return Item(("fact", q), q, fact.value, extra=(("attr", fact.attr),))


def two_hop_question(rng: random.Random, world: World, pools: tuple[str, ...]) -> Item:
    """A multi-hop question from an entity of one of `pools`; extra = (last attr,).

    The key is the chain (entity, path), so its other phrasings are held out with it.
    """
    path = rng.choice(sorted(TWO_HOP))
    kind = "person" if path[0] == "home" else "city"
    names = [e for p in pools for e in world.entities(kind, p)]
    e = rng.choice(names)
    q = rng.choice(TWO_HOP[path]).format(e=e)
    return Item(("two_hop", e, path), q, follow(world, e, path), extra=(("attr", path[-1]),))


def with_options(rng: random.Random, world: World, item: Item, k: int) -> tuple[list[str], int]:
    """`k` shuffled options around a knowledge item's answer, and the answer's index."""
    options = [item.answer] + distractors(rng, world, dict(item.extra)["attr"], item.answer, k - 1)
    rng.shuffle(options)
    return options, options.index(item.answer)


def numeric_options(rng: random.Random, answer: int, k: int) -> tuple[list[str], int]:
    """Near-miss numbers (off by one, by ten, ...) so that guessing by size does not work."""
    wrong: set[int] = set()
    while len(wrong) < k - 1:
        w = answer + rng.choice((-20, -11, -10, -9, -2, -1, 1, 2, 3, 9, 10, 11, 12, 20, 21, 30))
        if w >= 0 and w != answer:
            wrong.add(w)
    options = [str(answer)] + [str(w) for w in sorted(wrong)]
    rng.shuffle(options)
    return options, options.index(str(answer))


def build_bbh(rng, world, n_dev, n_test, taken):
    """Short exact answers from two chained steps; multi-hop chains may start at any entity."""
    makers = [(1, lambda r: two_hop_question(r, world, POOLS)), (1, ops.arithmetic_chain),
              (1, ops.list_chain), (1, ops.string_chain)]
    names = {"two_hop": "two_hop_facts", "arith_chain": "multistep_arithmetic",
             "list_chain": "list_operations", "string_chain": "string_operations"}
    out = {}
    for split, n in (("dev", n_dev), ("test", n_test)):
        items = draw(rng, n, makers, taken, what=f"bbh {split} items")
        taken.update(i.key for i in items)
        out[split] = [{"input": i.prompt, "target": i.answer, "task": names[i.key[0]]}
                      for i in items]
    return out


def build_gpqa(rng, world, n_dev, n_test, taken):
    """4-way questions whose distractors are plausible: same-type values, near-miss numbers."""
    makers = [(1, lambda r: two_hop_question(r, world, POOLS)), (1, ops.arithmetic_chain),
              (1, ops.list_chain)]
    out = {}
    for split, n in (("dev", n_dev), ("test", n_test)):
        items = draw(rng, n, makers, taken, what=f"gpqa {split} items")
        taken.update(i.key for i in items)
        rows = []
        for i in items:
            if i.key[0] == "two_hop":
                options, at = with_options(rng, world, i, 4)
                sub = "Two-hop geography"
            elif i.key[0] == "list_chain":
                options, at = chain_options(rng, i)
                sub = "List reasoning"
            else:
                options, at = numeric_options(rng, int(i.answer), 4)
                sub = "Multi-step arithmetic"
            wrong = options[:at] + options[at + 1:]
            rows.append({"Question": i.prompt, "Correct Answer": options[at],
                         "Incorrect Answer 1": wrong[0], "Incorrect Answer 2": wrong[1],
                         "Incorrect Answer 3": wrong[2], "Subdomain": sub})
        out[split] = rows
    return out


def chain_options(rng: random.Random, item: Item) -> tuple[list[str], int]:
    """The answer among the list's other items (padded with other words): needs the order."""
    items = item.key[-1]
    others = [w for w in items if w != item.answer]
    pad = sorted(set(ops.SHORT_WORDS) - set(items))
    options = [item.answer] + rng.sample(others, min(3, len(others)))
    options += rng.sample(pad, 4 - len(options))
    rng.shuffle(options)
    return options, options.index(item.answer)


def build_mmlu_pro(rng, world, n_dev, n_test, taken):
    """10-way questions: bench facts, 1-2 digit arithmetic, one-word list answers."""
    makers = [(2, lambda r: fact_question(r, world, "bench")), (1, ops.arithmetic),
              (1, list_question)]
    out, qid = {}, 0
    for split, n in (("dev", n_dev), ("test", n_test)):
        items = draw(rng, n, makers, taken, what=f"mmlu_pro {split} items")
        taken.update(i.key for i in items)
        rows = []
        for i in items:
            if i.key[0] == "fact":
                options, at = with_options(rng, world, i, 10)
                category = "history" if dict(i.extra)["attr"] in ("home", "job", "pet") else "other"
            elif i.key[0] == "arith":
                options, at = numeric_options(rng, int(i.answer), 10)
                category = "math"
            else:
                options, at = list_options(rng, i)
                category = "computer science"
            rows.append({"question_id": qid, "question": i.prompt, "options": options,
                         "answer": LETTERS[at], "answer_index": at, "category": category,
                         "src": f"toy-{category.replace(' ', '_')}"})
            qid += 1
        out[split] = rows
    return out


def list_question(rng: random.Random) -> Item:
    """A list item whose answer is one word (first/last) or a count, fit for 10 options."""
    while True:
        item = ops.list_op(rng)
        if item.key[1] in ("first", "last", "length"):
            return item


def list_options(rng: random.Random, item: Item) -> tuple[list[str], int]:
    """10 options for a `list_question`: the counts 1-10, or the answer among other words."""
    if item.key[1] == "length":
        options = [str(n) for n in range(1, 11)]
    else:
        others = sorted(set(ops.SHORT_WORDS) - {item.answer})
        options = [item.answer] + rng.sample(others, 9)
        rng.shuffle(options)
    return options, options.index(item.answer)


def build_ifeval(rng, world, n_dev, n_test, taken):
    """Writing prompts with 1-3 verifiable constraints; `gold` is a response meeting all of them."""
    entities = sorted(e for kind in world.names for e in world.entities(kind, "bench"))
    out, key = {}, 1000
    for split, n in (("dev", n_dev), ("test", n_test)):
        items = draw(rng, n, [(1, lambda r: ifeval_item(r, world, entities))], taken,
                     what=f"ifeval {split} prompts")
        taken.update(i.key for i in items)
        rows = []
        for i in items:
            extra = dict(i.extra)
            rows.append({"key": key, "prompt": i.prompt,
                         "instruction_id_list": list(extra["instruction_id_list"]),
                         "kwargs": [dict(k) for k in extra["kwargs"]], "gold": i.answer})
            key += 1
        out[split] = rows
    return out


def build_infobench(rng, world, n_dev, n_test, taken):
    """Introductions of a person with decomposed requirements, each with a rule in `checks`."""
    people = world.entities("person", "bench")
    out = {}
    for split, n in (("dev", n_dev), ("test", n_test)):
        items = draw(rng, n, [(1, lambda r: infobench_item(r, world, people))], taken,
                     what=f"infobench {split} items")
        taken.update(i.key for i in items)
        out[split] = [infobench_row(f"toy_infobench_{split}_{k}", i) for k, i in enumerate(items)]
    return out


def infobench_row(row_id: str, item: Item) -> dict:
    extra = dict(item.extra)
    return {"id": row_id, "input": extra["input"], "instruction": item.prompt,
            "decomposed_questions": list(extra["decomposed_questions"]),
            "subset": extra["subset"],
            "question_label": [list(label) for label in extra["question_label"]],
            "checks": [dict(c) for c in extra["checks"]], "gold": item.answer}


BUILDERS = {"bbh": build_bbh, "gpqa": build_gpqa, "mmlu_pro": build_mmlu_pro,
            "ifeval": build_ifeval, "infobench": build_infobench}


def build_benchmarks(seed: int, world: World, n_dev: int, n_test: int, taken: set) -> dict:
    """name -> {"dev", "test"} rows; adds every drawn key to `taken`.

    Each benchmark keeps dev and test disjoint on its own; two benchmarks may share an item, as
    independent real benchmarks can.
    """
    out = {}
    for name, build in BUILDERS.items():
        drawn: set = set()
        out[name] = build(random.Random(f"{seed}:bench:{name}"), world, n_dev, n_test, drawn)
        taken.update(drawn)
    return out
