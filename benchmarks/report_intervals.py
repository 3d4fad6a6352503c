"""Cost of the report's intervals on the paper's grid: `kdtools report` with and without them.

    PYTHONPATH=. .venv/bin/python benchmarks/report_intervals.py [--resamples 2000] [--text-kb 0] [--sizes 10]

Writes a synthetic paper-world results folder (in a temp dir) with every eval of Tables 1-3 and
Figures 2 and 4 (Table 3: 3 students x 10 sizes x SFT/GKD; Table 1: 8b SFT/GKD/SeqKD on full;
Table 2: 3 tasks x (3 students x 4 methods + the teacher)), each with a samples file at the paper
benchmarks' item counts (BBH 6,511, GPQA 448, MMLU-Pro 12,032, IFEval 541, InfoBench 500 prompts;
Flores 512, DialogSum 1,500, ARC 672), then times the real CLI (a subprocess, W&B off):
  (a) `report --resamples 0` (no samples read: tables and figures only),
  (b) `report --resamples N` (every delta's interval),
and prints both and their difference as JSON (last line). `--text-kb K` pads every row's prompt
with K KB of text, as real samples files carry (MMLU-Pro's 5-shot CoT prompts are ~7 KB): it
measures the JSON reading that dominates on real files (disk: 61 general evals x 20k rows x K KB;
`--sizes 2` keeps 2 sizes of the ladder per student, 13 general evals).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GENERAL = {"bbh": ("bbh_cot_fewshot", "exact_match,get-answer", 6511),
           "gpqa": ("gpqa_main_cot_zeroshot", "exact_match,flexible-extract", 448),
           "mmlu_pro": ("mmlu_pro", "exact_match,custom-extract", 12032),
           "ifeval": ("ifeval", "prompt_level_loose_acc,none", 541)}
DOMAIN = {"translation": 512, "summarization": 1500, "arc": 672}
SIZES = ["10k", "20k", "40k", "80k", "100k", "150k", "200k", "500k", "939k", "full"]
WORDS = ["the", "river", "stone", "walked", "quietly", "home", "under", "grey", "skies", "a", "man"]
REFS = [" ".join(np.random.default_rng(i).choice(WORDS, 12)) for i in range(DOMAIN["translation"])]


def doc(model, method, task, size, metrics, benchmarks, **extra) -> dict:
    return {"schema_version": 1, "world": "paper", "model": model, "method": method, "task": task, "size": size,
            "suite": task, **extra, "weights": "x", "metrics": metrics, "missing": {}, "benchmarks": benchmarks,
            "limit": None, "backend": "hf", "judge": None, "samples_file": f"{task}.samples.jsonl", "config": {},
            "config_hash": "0123456789abcdef", "versions": {}, "started_at": "2026-01-01T00:00:00", "wall_time_s": 1.0}


def general_eval(rng, skill: float, pad: str):
    rows, metrics, benchmarks = [], {}, {}
    for b, (task, metric, n) in GENERAL.items():
        x = (rng.random(n) < skill).astype(float)
        metrics[b] = round(100 * float(x.mean()), 2)
        benchmarks[b] = {"task": task, "source": "x", "metrics": [b], "lm_eval_metric": metric, "n": n}
        flt = metric.split(",")[1]
        rows += [{"benchmark": b, "subtask": f"{b}_{i % 14}", "doc_id": i, "filter": flt, "prompt": pad,
                  "response": "The answer is (A).", "target": "A", "scores": {metric.split(",")[0]: v}}
                 for i, v in enumerate(x)]
    reqs = [[bool(v) for v in rng.random(rng.integers(2, 8)) < skill] for _ in range(500)]
    flat = [v for q in reqs for v in q]
    metrics["infobench"] = round(100 * sum(flat) / len(flat), 2)
    benchmarks["infobench"] = {"task": "kd_infobench", "source": "x", "metrics": ["infobench"], "n": 500}
    rows += [{"benchmark": "infobench", "subtask": "kd_infobench", "doc_id": i, "prompt": pad, "response": "ok",
              "target": None, "scores": {"requirements": q}} for i, q in enumerate(reqs)]
    return metrics, benchmarks, rows


def domain_eval(rng, task: str, skill: float, pad: str):
    n = DOMAIN[task]
    if task == "arc":
        x = (rng.random(n) < skill).astype(float)
        rows = [{"benchmark": "arc", "subtask": "kd_arc", "doc_id": i, "filter": "none", "prompt": pad,
                 "target": "A", "scores": {"acc": v}} for i, v in enumerate(x)]
        return ({"accuracy": round(100 * float(x.mean()), 2)},
                {"arc": {"task": "kd_arc", "source": "x", "metrics": ["accuracy"], "lm_eval_metric": "acc,none", "n": n}},
                rows)
    x = np.round(np.clip(rng.normal(100 * skill, 15, n), 0, 100), 2)
    if task == "summarization":
        rows = [{"benchmark": task, "subtask": "kd_summarization", "doc_id": i, "prompt": pad, "target": f"t{i}",
                 "scores": {"rougeL": float(v)}} for i, v in enumerate(x)]
        return ({"rougeL": round(float(x.mean()), 2)},
                {task: {"task": "kd_summarization", "source": "x", "metrics": ["rougeL"], "n": n}}, rows)
    from kdtools.evaluation.metrics import chrf

    refs = REFS   # the same test set for every model
    hyps = [" ".join(w for w in r.split() if rng.random() < skill) for r in refs]
    rows = [{"benchmark": task, "subtask": "kd_translation", "doc_id": i, "prompt": pad, "response": h, "target": r,
             "scores": {"comet": float(v)}} for i, (h, r, v) in enumerate(zip(hyps, refs, x, strict=True))]
    return ({"comet": round(float(x.mean()), 2), "chrf": chrf(hyps, refs)},
            {task: {"task": "kd_translation", "source": "x", "metrics": ["chrf", "comet"], "n": n}}, rows)


def put(world: Path, d: dict, rows: list[dict], leaf: str | None = None) -> None:
    folder = world / "evals" / d["model"] / d["method"] / d["task"] / (leaf or d["size"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{d['task']}.json").write_text(json.dumps(d))
    with (folder / f"{d['task']}.samples.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def write_grid(world: Path, pad: str, sizes: int = len(SIZES)) -> int:
    rng, n = np.random.default_rng(0), 0
    ladder = SIZES[:sizes - 1] + ["full"] if sizes else []
    cells = [(m, k, s) for m in ("1b", "3b", "8b") for s in ladder for k in ("sft", "gkd")] + [("8b", "seqkd", "full")]
    for model, method, size in cells:
        metrics, benchmarks, rows = general_eval(rng, 0.3 + 0.05 * (method != "sft"), pad)
        dims = {"init": "sft", "teacher": "70b"} if method == "gkd" else {"init": "base", "teacher": "70b"} \
            if method == "seqkd" else {"init": "base"}
        put(world, doc(model, method, "general", size, metrics, benchmarks, **dims), rows)
        n += 1
    for task in DOMAIN:
        for model, method in [("70b", "sft")] + [(s, m) for s in ("1b", "3b", "8b")
                                                for m in ("sft", "gkd", "mix", "two_stage")]:
            metrics, benchmarks, rows = domain_eval(rng, task, 0.4 + 0.05 * (method != "sft"), pad)
            extra = {"teacher": "70b", "synthetic": "100k"} if method in ("mix", "two_stage") else {"init": "sft"}
            leaf = "full+synth-100k" if "synthetic" in extra else None
            put(world, doc(model, method, task, "full", metrics, benchmarks, **extra), rows, leaf)
            n += 1
    return n


def timed_report(results: Path, resamples: int) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "kdtools.cli", "--world", "paper", "--results", str(results), "report",
           "--resamples", str(resamples)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    if proc.returncode:
        raise SystemExit(f"report failed ({proc.returncode}): {proc.stderr[-2000:]}")
    wall = time.perf_counter() - start
    return wall, json.loads((results / "paper" / "tables" / "report.json").read_text())["intervals"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--text-kb", type=float, default=0.0, help="prompt padding per samples row, in KB")
    ap.add_argument("--sizes", type=int, default=len(SIZES), help="ladder sizes per student (paper: 10)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kd-report-bench-") as tmp:
        results = Path(tmp) / "results"
        start = time.perf_counter()
        evals = write_grid(results / "paper", "x" * int(args.text_kb * 1024), args.sizes)
        size_mb = sum(p.stat().st_size for p in results.rglob("*.jsonl")) / 2**20
        print(f"wrote {evals} evals ({size_mb:.0f} MB of samples) in {time.perf_counter() - start:.0f} s", flush=True)
        plain, _ = timed_report(results, 0)
        print(f"report --resamples 0: {plain:.1f} s", flush=True)
        full, iv = timed_report(results, args.resamples)
        print(f"report --resamples {args.resamples}: {full:.1f} s ({iv['with_interval']}/{iv['deltas']} deltas "
              f"with an interval, {iv['marked']} marked)", flush=True)
        print(json.dumps({"evals": evals, "samples_mb": round(size_mb), "resamples": args.resamples,
                          "text_kb": args.text_kb, "report_s_no_intervals": round(plain, 1),
                          "report_s_with_intervals": round(full, 1), "intervals_s": round(full - plain, 1),
                          "deltas": iv["deltas"], "with_interval": iv["with_interval"]}))


if __name__ == "__main__":
    main()
