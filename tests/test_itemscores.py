"""kdtools.itemscores: per-item scores whose statistic on all items IS the reported metric
(corpus chrF recomputed from segment counts as sacrebleu does, DRFR pooled over prompts, the
lm-eval filter the metric names), and a clear reason instead of items when they cannot be had."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from kdtools.evalindex import Record, read_record
from kdtools.evaluation import metrics
from kdtools.itemscores import ItemScores, NoItems, by_benchmark, chrf_statistic, chrf_stats, metric_items


def assert_items_reproduce(eval_json: Path) -> None:
    """Every metric of a real `kdtools eval` output has per-item scores whose statistic is it
    (called by tests/evaluation/test_eval_cli.py on the evals it runs)."""
    rec, scores = read_record(eval_json), ItemScores()
    got = {m: scores.items(rec, m).value for m, v in rec.metrics.items() if v is not None}
    assert got and got == pytest.approx({m: v for m, v in rec.metrics.items() if v is not None}, abs=0.02)


def record(tmp_path: Path, metrics_: dict, benchmarks: dict, rows: list[dict] | None) -> Record:
    samples = tmp_path / "general.samples.jsonl"
    if rows is not None:
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return Record(path=tmp_path / "general.json", model="1b", method="gkd", task="general", size="10k",
                  suite="general", init="sft", teacher="70b", synthetic=None, match=None, variant="", started_at="",
                  metrics=metrics_, benchmarks=benchmarks, samples=samples)


def test_chrf_statistic_is_sacrebleus_corpus_chrf():
    rng = np.random.default_rng(0)
    words = ["river", "stone", "a", "the", "walked", "quietly", "home", "x"]
    refs = [" ".join(rng.choice(words, rng.integers(1, 9))) for _ in range(60)]
    hyps = [" ".join(w for w in r.split() if rng.random() < 0.7) for r in refs]
    hyps[3] = ""                                              # an empty generation counts too
    stats = chrf_stats(hyps, refs)
    for _ in range(20):                                       # any resample = any multiset of segments
        take = rng.integers(0, 60, 60)
        want = sacrebleu.corpus_chrf([hyps[i] for i in take], [[refs[i] for i in take]]).score
        assert chrf_statistic(stats[take].sum(0)) == pytest.approx(want, abs=1e-9)
    batch = np.stack([stats[:30].sum(0), stats[30:].sum(0)])
    assert chrf_statistic(batch) == pytest.approx([sacrebleu.corpus_chrf(hyps[:30], [refs[:30]]).score,
                                                   sacrebleu.corpus_chrf(hyps[30:], [refs[30:]]).score])
    assert chrf_statistic(np.zeros(18)) == 0.0


def test_drfr_items_pool_requirements(tmp_path):
    reqs = [[True, False, None], [True], [False, False, True, True, True]]
    rows = [{"benchmark": "infobench", "subtask": "kd_infobench", "doc_id": i, "scores": {"requirements": q}}
            for i, q in enumerate(reqs)]
    rec = record(tmp_path, {"infobench": metrics.drfr(reqs)},
                 {"infobench": {"task": "kd_infobench", "metrics": ["infobench"]}}, rows)
    items = metric_items(rec, "infobench", by_benchmark(rows))
    assert items.n == 3 and items.value == pytest.approx(100 * 5 / 9)   # not the mean of per-prompt ratios


def lmeval_rows(bench: str, key: str, filters: dict[str, list[int]], with_filter: bool = True) -> list[dict]:
    return [{"benchmark": bench, "subtask": bench, "doc_id": i, "target": "(A)", "scores": {key: v},
             **({"filter": flt} if with_filter else {})}
            for flt, values in filters.items() for i, v in enumerate(values)]


def test_the_metrics_filter_is_used(tmp_path):
    """GPQA CoT logs each question twice (strict-match, flexible-extract): the metric names one."""
    rows = lmeval_rows("gpqa", "exact_match", {"strict-match": [0, 0, 0, 1], "flexible-extract": [1, 1, 0, 1]})
    info = {"gpqa": {"task": "gpqa_main_cot_zeroshot", "metrics": ["gpqa"],
                     "lm_eval_metric": "exact_match,flexible-extract"}}
    items = metric_items(record(tmp_path, {"gpqa": 75.0}, info, rows), "gpqa", by_benchmark(rows))
    assert items.n == 4 and items.value == 75.0
    old = lmeval_rows("gpqa", "exact_match", {"a": [0, 0, 0, 1], "b": [1, 1, 0, 1]}, with_filter=False)
    with pytest.raises(NoItems, match="holds some items twice"):
        metric_items(record(tmp_path, {"gpqa": 75.0}, info, old), "gpqa", by_benchmark(old))


def test_refusals_say_why(tmp_path):
    info = {"bbh": {"task": "kd_bbh", "metrics": ["bbh"], "lm_eval_metric": "exact_match,none"}}
    rows = lmeval_rows("bbh", "exact_match", {"none": [1, 0, 0, 0]})
    with pytest.raises(NoItems, match=r"per-item bbh gives 25.00 on 4 items, the eval reports 30.0"):
        metric_items(record(tmp_path, {"bbh": 30.0}, info, rows), "bbh", by_benchmark(rows))
    with pytest.raises(NoItems, match="does not say which benchmark scored bbh"):
        metric_items(record(tmp_path, {"bbh": 25.0}, {}, rows), "bbh", by_benchmark(rows))
    scores = ItemScores()
    missing = record(tmp_path / "elsewhere", {"bbh": 25.0}, info, None)
    with pytest.raises(NoItems, match="general.samples.jsonl is missing"):
        scores.items(missing, "bbh")
    broken = record(tmp_path, {"bbh": 25.0}, info, [])
    broken.samples.write_text('{"benchmark": "bbh"\n')
    with pytest.raises(NoItems, match="unreadable"):
        ItemScores().items(broken, "bbh")
    good = record(tmp_path, {"bbh": 25.0, "gpqa": None}, info, rows)
    assert ItemScores().items(good, "bbh").value == 25.0
    with pytest.raises(NoItems, match="no reported gpqa"):
        ItemScores().items(good, "gpqa")
