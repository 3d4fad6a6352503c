"""An eval's per-item scores, read from its `<suite>.samples.jsonl`, as bootstrap Items whose
statistic on all items IS the metric its eval JSON reports.

    scores = ItemScores()
    items = scores.items(record, "bbh")      # kdtools.bootstrap.Items, or raises NoItems(why)

Per metric (the samples' fields are in docs/eval.md):

| metric | one item (the resampling unit) | its statistics | the metric from their sum |
|---|---|---|---|
| `bbh`, `gpqa`, `mmlu_pro`, `ifeval`, `accuracy` | a question (of any subtask) | lm-eval's per-sample value of `lm_eval_metric` for its filter (0/1 -> 0/100; IFEval: prompt-level loose) | the mean: BBH and MMLU-Pro are group means weighted by subtask size, i.e. over all questions |
| `infobench` | a prompt | [100 x satisfied requirements, requirements] | pooled ratio: DRFR pools requirements over prompts; a prompt is the unit because its requirements share one response and one judge conversation |
| `rougeL`, `comet` | a summary / a segment | its score | the mean (COMET's system score is the mean of segment scores) |
| `chrf` | a segment | sacrebleu's character n-gram counts (hyp, ref, match per order) | corpus chrF from the summed counts, exactly as sacrebleu computes it; not a mean of sentence chrF |

An item's id is (subtask, doc_id, a hash of its target), so two models' evals pair item by item
and an eval on other data does not pair at all. Each samples file is read once, all of its
metrics taken at that pass. Items are refused (NoItems, with the reason for report.json) when the
file is missing or unreadable, when an item appears twice (several lm-eval filters in an older
samples file that does not record which), or when the statistic on all items differs from the
reported metric by more than TOLERANCE (an interval about another number would mislead).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kdtools.bootstrap import Items
from kdtools.evaluation.config import POST_SCORED

if TYPE_CHECKING:
    from kdtools.evalindex import Record

TOLERANCE = 0.02   # points: per-item scores are stored to 2 decimals, the metric too
CHRF_ORDER, CHRF_BETA = 6, 2   # sacrebleu's chrF defaults (metrics.chrf uses them)


class NoItems(Exception):
    """No per-item scores for this metric of this eval; the message says why (a dash's reason)."""


def chrf_statistic(sums: np.ndarray) -> np.ndarray:
    """Corpus chrF (0-100) from summed segment statistics (..., 3 * CHRF_ORDER) laid out as
    sacrebleu's [hyp, ref, match] per character n-gram order: sacrebleu's CHRF._compute_f_score
    (beta 2, no word n-grams, effective-order averaging), vectorised over the leading axes."""
    s = np.asarray(sums, dtype=np.float64).reshape(*np.shape(sums)[:-1], CHRF_ORDER, 3)
    hyp, ref, match = s[..., 0], s[..., 1], s[..., 2]
    live = (hyp > 0) & (ref > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(live, match / np.where(hyp > 0, hyp, 1), 0.0).sum(-1)
        rec = np.where(live, match / np.where(ref > 0, ref, 1), 0.0).sum(-1)
        orders = live.sum(-1)
        prec, rec = prec / np.maximum(orders, 1), rec / np.maximum(orders, 1)
        factor = CHRF_BETA ** 2
        score = 100 * (1 + factor) * prec * rec / (factor * prec + rec)
    return np.where(prec + rec > 0, score, 0.0)


def chrf_stats(hypotheses: list[str], references: list[str]) -> np.ndarray:
    """(n, 3 * CHRF_ORDER) per-segment statistics, as sacrebleu's corpus_chrf collects them."""
    from sacrebleu.metrics import CHRF

    metric = CHRF(char_order=CHRF_ORDER, word_order=0, beta=CHRF_BETA)
    return np.asarray(metric._extract_corpus_statistics(hypotheses, [references]), dtype=np.float64)


def item_id(row: dict) -> str:
    target = row.get("target")
    if not isinstance(target, str):
        target = json.dumps(target, sort_keys=True, default=str, ensure_ascii=False)
    return f"{row.get('subtask')}/{row.get('doc_id')}/{hashlib.sha1(target.encode()).hexdigest()[:10]}"


def benchmark_of(record: Record, metric: str) -> tuple[str, dict]:
    """-> (the benchmark whose samples hold `metric`, its entry in the eval JSON's `benchmarks`)."""
    for name, info in record.benchmarks.items():
        if metric in info.get("metrics", ()):
            return name, info
    raise NoItems(f"{record.path}: `benchmarks` does not say which benchmark scored {metric}")


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise NoItems(f"no per-item scores: {path} is missing")
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NoItems(f"{path} is unreadable ({exc})") from exc


def by_benchmark(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r.get("benchmark"), []).append(r)
    return out


def metric_items(record: Record, metric: str, rows: dict[str, list[dict]]) -> Items:
    """Items of one metric from the samples rows, grouped by benchmark (see the module docstring)."""
    bench, info = benchmark_of(record, metric)
    rows = rows.get(bench, [])
    kind = POST_SCORED.get(info.get("task"), "lmeval")
    if kind == "lmeval":
        key, _, flt = (info.get("lm_eval_metric") or "").partition(",")
        if not key:
            raise NoItems(f"{record.path}: `benchmarks.{bench}` names no lm_eval_metric")
        rows = [r for r in rows if r.get("filter", flt) == flt]
    if not rows:
        raise NoItems(f"{record.samples}: no rows of benchmark {bench}")
    ids = [item_id(r) for r in rows]
    if len(set(ids)) < len(ids):
        raise NoItems(f"{record.samples}: {bench} holds some items twice (several lm-eval filters, "
                      "and the rows do not say which): re-evaluate with `kdtools eval --force`")
    try:
        if kind == "lmeval":
            items = Items.mean(bench, ids, [100.0 * float(r["scores"][key]) for r in rows])
        elif kind == "judge":
            reqs = [r["scores"]["requirements"] for r in rows]
            items = Items.of(bench, ids, [[100.0 * sum(j is True for j in q), len(q)] for q in reqs])
        elif metric == "chrf":
            stats = chrf_stats([r["response"].strip() for r in rows], [r["target"] for r in rows])
            items = Items.of(bench, ids, stats, chrf_statistic)
        else:
            items = Items.mean(bench, ids, [float(r["scores"][metric]) for r in rows])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise NoItems(f"{record.samples}: a {bench} row lacks its per-item {metric} ({exc!r})") from exc
    reported = record.metrics.get(metric)
    if reported is None or not abs(items.value - reported) <= TOLERANCE:
        raise NoItems(f"{record.samples}: per-item {metric} gives {items.value:.2f} on {items.n} items, "
                      f"the eval reports {reported}: no interval about a different number")
    return items


class ItemScores:
    """Items per (eval, metric), each samples file read once (all its metrics at that pass)."""

    def __init__(self):
        self._done: dict[tuple[Path, str], Items | str] = {}   # Items, or why there are none

    def items(self, record: Record, metric: str) -> Items:
        key = (record.path, metric)
        if key not in self._done:
            self._read(record)
            self._done.setdefault(key, f"{record.path}: no reported {metric}")
        got = self._done[key]
        if isinstance(got, str):
            raise NoItems(got)
        return got

    def _read(self, record: Record) -> None:
        wanted = [m for m, v in record.metrics.items() if v is not None and (record.path, m) not in self._done]
        try:
            rows = by_benchmark(read_rows(record.samples))
        except NoItems as exc:
            self._done.update({(record.path, m): str(exc) for m in wanted})
            return
        for m in wanted:
            try:
                self._done[(record.path, m)] = metric_items(record, m, rows)
            except NoItems as exc:
                self._done[(record.path, m)] = str(exc)
