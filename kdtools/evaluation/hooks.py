"""Functions that lm-eval calls for the kd_* task templates (prompts, targets, per-row scores).

The templates in kdtools/evaluation/tasks/ name them as `!function kd_hooks.<name>`; lm-eval
imports kd_hooks.py from the YAML's folder, and that shim re-exports this module. Prompts are the
ones training uses (kdtools.tasks), so a student is evaluated in the layout it learned.
`LANGUAGE` is set by the runner to the world's `source_language` before tasks load.
"""

from __future__ import annotations

import hashlib
import random

from kdtools import tasks
from kdtools.evaluation.metrics import LETTERS, exact_match, extract_letter, rouge_l_scores, sentence_chrf

LANGUAGE = "Assamese"


def _response(results: list) -> str:
    return results[0] if results else ""


# --- prompts and targets ---------------------------------------------------------------

def bbh_text(doc: dict) -> str:
    return doc["input"]


def bbh_target(doc: dict) -> str:
    return doc["target"]


def gpqa_options(doc: dict) -> tuple[list[str], int]:
    """GPQA's four answers in an order fixed by the question's hash (lm-eval shuffles with a
    global RNG instead; a hash keeps the order stable under --limit and across runs)."""
    options = [doc["Correct Answer"], doc["Incorrect Answer 1"], doc["Incorrect Answer 2"],
               doc["Incorrect Answer 3"]]
    seed = int(hashlib.sha256(doc["Question"].encode()).hexdigest()[:8], 16)
    order = list(range(4))
    random.Random(seed).shuffle(order)
    return [options[i] for i in order], order.index(0)


def mc_options(doc: dict) -> tuple[list[str], str]:
    """(options, gold letter) of a GPQA, MMLU-Pro or ARC row."""
    if "Correct Answer" in doc:
        options, at = gpqa_options(doc)
        return options, LETTERS[at]
    if "options" in doc:
        return list(doc["options"]), doc["answer"]
    return list(doc["choices"]["text"]), doc["answerKey"]


def gpqa_text(doc: dict) -> str:
    return tasks.mc_prompt(doc["Question"], gpqa_options(doc)[0])


def mmlu_pro_text(doc: dict) -> str:
    return tasks.mc_prompt(doc["question"], list(doc["options"]))


def mc_target(doc: dict) -> str:
    return mc_options(doc)[1]


def mc_bare_question(doc: dict) -> str:
    """A multiple-choice row's question alone: in the cloze templates (kd_*_cloze) the options are
    the continuations scored by log-likelihood, so the prompt does not list them."""
    return doc["Question"] if "Question" in doc else doc["question"]


def mc_choices(doc: dict) -> list[str]:
    """The options' texts, in the row's order (GPQA: the hash-fixed order)."""
    return mc_options(doc)[0]


def mc_index(doc: dict) -> int:
    """The gold option's position in `mc_choices`."""
    return LETTERS.index(mc_options(doc)[1])


def ifeval_text(doc: dict) -> str:
    return doc["prompt"]


def infobench_text(doc: dict) -> str:
    """InFoBench's layout: the instruction, a blank line, then the input (when there is one)."""
    return f"{doc['instruction']}\n\n{doc['input']}" if doc.get("input") else doc["instruction"]


def translation_text(doc: dict) -> str:
    return tasks.prompt("translation", doc, LANGUAGE)


def summarization_text(doc: dict) -> str:
    return tasks.prompt("summarization", doc)


def arc_text(doc: dict) -> str:
    return tasks.prompt("arc", doc)


def reference_translation(doc: dict) -> str:
    return tasks.reference("translation", doc)


def reference_summarization(doc: dict) -> str:
    return tasks.reference("summarization", doc)


# --- per-row scores (lm-eval's process_results: (doc, [response]) -> {metric: value}) ---------

def score_exact(doc: dict, results: list) -> dict:
    return {"exact_match": float(exact_match(_response(results), doc["target"]))}


def score_letter(doc: dict, results: list) -> dict:
    options, gold = mc_options(doc)
    return {"acc": float(extract_letter(_response(results), len(options)) == gold)}


def score_toy_ifeval(doc: dict, results: list) -> dict:
    """IFEval's prompt-level strict and loose accuracy from the toy world's rule checkers."""
    from kdtools.toy.checkers import check_ifeval

    out = check_ifeval(doc, _response(results))
    return {"prompt_level_strict_acc": float(out["strict"]), "prompt_level_loose_acc": float(out["loose"])}


def score_generated(doc: dict, results: list) -> dict:
    """Generation-only rows (InFoBench): judged after lm-eval, by kdtools.evaluation.judge."""
    return {"nonempty": float(bool(_response(results).strip()))}


def score_chrf(doc: dict, results: list) -> dict:
    """Sentence chrF (the reported chrF is corpus-level, computed from all rows afterwards)."""
    return {"chrf": sentence_chrf(_response(results), reference_translation(doc))}


def score_rouge(doc: dict, results: list) -> dict:
    return {"rougeL": 100.0 * rouge_l_scores([_response(results)], [reference_summarization(doc)])[0]}
