"""The toy domain tasks: translation (Flores-200), summarization (DialogSum), ARC.

Rows use the real datasets' field names. `task_prompt` turns a row into the (prompt, reference)
pair that training and evaluation use, and the instruction pool uses the same layout on other
items, so a student has met each format before its domain training starts.
"""

from __future__ import annotations

import random

from kdtools import tasks
from kdtools.toy.dialogues import dialogue
from kdtools.toy.drawing import Item, draw
from kdtools.toy.language import LANGUAGE, Language, random_sentence
from kdtools.toy.science import LETTERS, Science, science_question

SPLITS = ("train", "dev", "test")


def translation_item(rng: random.Random, lang: Language) -> Item:
    s = random_sentence(rng)
    return Item(s.key(), lang.translate(s), s.english())


def task_prompt(task: str, row: dict) -> tuple[str, str]:
    """(prompt, reference) for a task row, in the layout kdtools.tasks defines for every world;
    ARC's reference is the answer letter."""
    return tasks.prompt(tasks.check_task(task), row, LANGUAGE), tasks.reference(task, row)


def translation_row(i: int, item: Item) -> dict:
    return {"id": i, "sentence_asm_Beng": item.prompt, "sentence_eng_Latn": item.answer}


def summarization_row(row_id: str, item: Item) -> dict:
    return {"id": row_id, "dialogue": item.prompt, "summary": item.answer,
            "topic": dict(item.extra)["topic"]}


def arc_row(row_id: str, item: Item) -> dict:
    return {"id": row_id, "question": item.prompt,
            "choices": {"text": list(dict(item.extra)["choices"]), "label": list(LETTERS)},
            "answerKey": item.answer}


def build_tasks(seed: int, lang: Language, sci: Science, cities: list[str],
                sizes: dict[str, int], taken: set) -> dict:
    """name -> split -> rows, all keys distinct across splits and added to `taken`."""
    makers = {"translation": lambda r: translation_item(r, lang),
              "summarization": lambda r: dialogue(r, cities),
              "arc": lambda r: science_question(sci, r)}
    out: dict = {}
    for name, maker in makers.items():
        rng = random.Random(f"{seed}:task:{name}")
        out[name] = {}
        for split in SPLITS:
            items = draw(rng, sizes[split], [(1, maker)], taken, what=f"{name} {split} rows")
            taken.update(i.key for i in items)
            if name == "translation":
                rows = [translation_row(k, i) for k, i in enumerate(items)]
            elif name == "summarization":
                rows = [summarization_row(f"{split}_{k}", i) for k, i in enumerate(items)]
            else:
                rows = [arc_row(f"Toy_ARC_{split}_{k}", i) for k, i in enumerate(items)]
            out[name][split] = rows
    return out
