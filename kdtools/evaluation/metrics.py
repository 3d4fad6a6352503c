"""Metric functions of the eval stage: pure, on plain Python lists, scores on a 0-100 scale.

Each takes model outputs and references in the same order and returns one number (or one per
example where a function says so). The benchmarks' own scorers (lm-eval's BBH/GPQA/MMLU-Pro/
IFEval filters and checks) are used where they exist; these cover the rest: the domain tasks
(chrF, ROUGE-L, accuracy from an extracted letter), InFoBench's DRFR, and the toy benchmarks.
"""

from __future__ import annotations

import re
import string

LETTERS = "ABCDEFGHIJ"


def percent(value: float | None) -> float | None:
    """A 0-1 fraction -> 0-100, rounded to 2 decimals (None stays None)."""
    return None if value is None else round(100.0 * value, 2)


def mean(values: list[float]) -> float | None:
    """Arithmetic mean; None for an empty list (a benchmark with no rows has no score)."""
    return sum(values) / len(values) if values else None


def normalize_answer(text: str) -> str:
    """Lowercase, trim, drop surrounding punctuation and a leading 'the answer is': what exact
    match compares for short answers ('Moon.' == 'moon')."""
    text = text.strip().lower()
    text = re.sub(r"^(the )?answer( is)?:?\s*", "", text)
    return text.strip().strip(string.punctuation + " ").strip()


def exact_match(prediction: str, target: str) -> bool:
    """True when the first line of `prediction` equals `target` after `normalize_answer`."""
    first = prediction.strip().split("\n", 1)[0] if prediction.strip() else ""
    return normalize_answer(first) == normalize_answer(target)


def extract_letter(text: str, n_options: int) -> str | None:
    """The option letter a generated answer names, or None.

    Tries, in order: 'answer is (X)' / 'answer: X' (CoT endings), a letter standing alone at
    the start ('B', 'B.', 'B) ...', '(B) ...', alone on its first line), then the last '(X)'.
    Only letters of the first `n_options` count; 'A horse ...' is not read as the letter A.
    """
    valid = LETTERS[:n_options]
    text = text.strip()
    if not text:
        return None
    m = re.search(rf"answer(?: is|:)\s*\(?([{valid}])\)?(?![A-Za-z])", text, flags=re.IGNORECASE)
    if m:
        return m.group(1).upper()
    m = re.match(rf"^\(?([{valid}])\)?(?:[.:)]|[ \t]*(?:\n|$))", text)
    if m:
        return m.group(1)
    found = re.findall(rf"\(([{valid}])\)", text)
    return found[-1] if found else None


def letter_accuracy(predictions: list[str], golds: list[str], n_options: list[int]) -> float | None:
    """Percent of predictions whose extracted letter equals the gold letter."""
    hits = [extract_letter(p, n) == g for p, g, n in zip(predictions, golds, n_options, strict=True)]
    return percent(mean([float(h) for h in hits]))


def chrf(hypotheses: list[str], references: list[str]) -> float | None:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2), 0-100."""
    if not hypotheses:
        return None
    import sacrebleu

    return round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2)


def sentence_chrf(hypothesis: str, reference: str) -> float:
    """chrF of one segment (for the per-example file; the reported score is `chrf`)."""
    import sacrebleu

    return round(sacrebleu.sentence_chrf(hypothesis, [reference]).score, 2)


def rouge_l_scores(hypotheses: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F-measure of each summary (rouge-score, Porter stemming), 0-1."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)]


def rouge_l(hypotheses: list[str], references: list[str]) -> float | None:
    """Mean sentence-level ROUGE-L F-measure over the summaries, 0-100 (DialogSum's usual
    report; rouge-score's tokenizer lowercases and keeps only [a-z0-9] tokens)."""
    return percent(mean(rouge_l_scores(hypotheses, references)))


def drfr(judgments: list[list[bool | None]]) -> float | None:
    """Decomposed Requirements Following Ratio: satisfied requirements / all requirements,
    pooled over every instruction (not a mean of per-instruction ratios), 0-100. A judgment of
    None (the judge gave no usable yes/no) counts as not satisfied, as in InFoBench's script."""
    flat = [j is True for row in judgments for j in row]
    return percent(mean([float(x) for x in flat]))
