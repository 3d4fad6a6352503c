"""Receipts (`kdtools report` -> tables/receipts.{md,csv}, figures/receipts.png, model cards), from
hand-made eval JSONs, samples files and run.json files whose numbers are known (smoke world, seed
7): gains over SFT and over the compute-matched SFT equal the paired bootstrap of those items,
costs add up (a chain is the sum of its runs, a shared generation is divided row by row and
counted once), a missing run.json is estimated and marked, a missing cost or control is a dash,
and the model cards carry the scores, intervals and receipts lines."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

from kdtools import costs, figures, manifest
from kdtools.bootstrap import Bootstrap
from tests.conftest import kdtools
from tests.test_report import WORLD, eval_doc, put
from tests.test_report_intervals import BENCH, SEED, flip, general_cell, general_pair, items, score_cell

H = 3600.0


def run_json(world_dir: Path, model, method, task, leaf, seconds, device="gpu", steps=10, uses=(), **dims) -> dict:
    """A finished run's manifest as kdtools writes it (the fields receipts and cards read)."""
    size = leaf.split("+")[0]
    config = {"world": WORLD, "method": method, "model": model, "data": size, "task": task,
              "data_file": f"/data/{task}/{size}.jsonl", "data_sha256": "ab" * 32, "seed": SEED,
              "train": {"learning_rate": 0.002, "epochs": 2}, "weights": f"/base/{model}"}
    if method in ("gkd", "mix", "two_stage"):
        config |= {"student": model, "teacher": "70b", "teacher_weights": "/teacher/70b",
                   "gkd": {"lmbda": 0.5, "beta": 0.5}}
    run = {"verb": method, "config": config, "config_hash": manifest.config_hash(config),
           "dims": {"student": model, "method": method, "size": size, "task": task, **dims},
           "metrics": {"steps": steps, "rows": 50, "tokens_seen": 1234}, "versions": {"kdtools": "0.1.0"},
           "git_commit": "abc", "started_at": "2026-01-01T00:00:00",
           "cost": {"device": device, "device_name": "H100" if device == "gpu" else "cpu", "nodes": 1,
                    "devices_per_node": 1, "device_seconds": seconds,
                    "gpu_seconds": seconds if device == "gpu" else None, **({"uses": list(uses)} if uses else {})}}
    folder = world_dir / "models" / model / method / task / leaf
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(run))
    return run


def use(gen: str, kind: str, rows_used: int, rows: int) -> dict:
    return {"kind": kind, "generation": gen, "rows_used": rows_used, "rows": rows}


def generation(world_dir: Path, gen: str, seconds: float, rows: int, key: str = "prompts") -> None:
    folder = world_dir / gen
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"verb": "annotate", key: rows, "config_hash": "g",
                                                 "cost": {"device": "gpu", "device_seconds": seconds}}))


def cell(world_dir, model, method, task, leaf, got, rows, run=None, **extra) -> None:
    """An eval JSON (+ samples) of a model; `run` ties it to that run's config hash."""
    size = leaf.split("+")[0]
    doc = eval_doc(model, method, task, size, got, **extra)
    if run is not None:
        doc["config"] = {"model_config_hash": run["config_hash"]}
    path = put(world_dir, doc, leaf[len(size) + 1:])
    path.with_name(f"{task}.samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_world(world_dir: Path) -> dict:
    rng = np.random.default_rng(1)
    rows = {}
    base = dict(init="base", teacher=None)
    kd = dict(init="sft", teacher="70b")
    # Table 3, 1b 10k: SFT 1 GPU-h, GKD 2 more (after the SFT it continues), SFT-long 0.5 more
    sft, gkd = general_pair(rng)
    ctl = {b: flip(rng, sft[b], 0.05) for b in ("bbh", "gpqa", "ifeval", "mmlu_pro")}
    ctl["bbh"][:90] = 1.0        # the control gains half of GKD's BBH lift
    ctl["infobench"] = sft["infobench"]
    runs = {"sft": run_json(world_dir, "1b", "sft", "general", "10k", 1 * H, steps=12, **base),
            "gkd": run_json(world_dir, "1b", "gkd", "general", "10k", 2 * H, steps=14, **kd),
            "ctl": run_json(world_dir, "1b", "sft_long", "general", "10k+match-gkd", 0.5 * H, steps=14,
                            init="sft", teacher=None, match="gkd", match_steps=14)}
    for name, per, method, leaf, dims in (("sft", sft, "sft", "10k", base), ("gkd", gkd, "gkd", "10k", kd),
                                          ("ctl", ctl, "sft_long", "10k+match-gkd", dict(init="sft", teacher=None, match="gkd"))):
        got, rows[name] = general_cell(per)
        cell(world_dir, "1b", method, "general", leaf, got, rows[name], runs[name], **dims)
    # Table 3, 1b 20k: no control, and the SFT's cost on a CPU while GKD's is on a GPU: no total
    sft20, gkd20 = general_pair(rng)
    r20 = {"sft": run_json(world_dir, "1b", "sft", "general", "20k", 0.2 * H, device="cpu", **base),
           "gkd": run_json(world_dir, "1b", "gkd", "general", "20k", 0.3 * H, **kd)}
    for name, per, dims in (("sft", sft20, base), ("gkd", gkd20, kd)):
        got, rows[f"{name}20"] = general_cell(per)
        cell(world_dir, "1b", name, "general", "20k", got, rows[f"{name}20"], r20[name], **dims)
    # Table 3, 3b 10k: evaluated, run elsewhere (no run.json): the plan's estimate, marked
    for name, per, dims in zip(("sft", "gkd"), general_pair(rng), (base, kd), strict=True):
        got, rows[f"3b{name}"] = general_cell(per)
        cell(world_dir, "3b", name, "general", "10k", got, rows[f"3b{name}"], **dims)
    # Table 1 SeqKD (8b, full): the teacher's samples (4 GPU-h) are shared with a 3b SeqKD run
    samples = "data/seqkd/70b/general/full-x5"
    generation(world_dir, samples, 4 * H, 50)
    r8 = {"sft": run_json(world_dir, "8b", "sft", "general", "full", 1 * H, **base),
          "seqkd": run_json(world_dir, "8b", "seqkd", "general", "full", 1.5 * H,
                            uses=[use(samples, "seqkd samples", 50, 50)], init="base", teacher="70b")}
    run_json(world_dir, "3b", "seqkd", "general", "full", 1.0 * H, uses=[use(samples, "seqkd samples", 50, 50)])
    for name, per, dims in zip(("sft", "seqkd"), general_pair(rng), (base, dict(init="base", teacher="70b")), strict=True):
        got, rows[f"8b{name}"] = general_cell(per)
        cell(world_dir, "8b", name, "general", "full", got, rows[f"8b{name}"], r8[name], **dims)
    # Table 2, 1b summarization: Mix at 10k (16 rows of a 16-row pool, 8 GPU-h of annotation) and
    # a 2-Stage at 5k (8 rows: its stage 1 lists the pool), its compute-matched SFT
    pool = "data/annotated/summarization/70b/10k"
    generation(world_dir, pool, 8 * H, 16)
    rs = {"sft": run_json(world_dir, "1b", "sft", "summarization", "full", 0.25 * H, steps=10, init="sft"),
          "mix": run_json(world_dir, "1b", "mix", "summarization", "full+synthetic-10k", 0.75 * H, steps=16,
                          uses=[use(pool, "annotate", 16, 16)], init="sft", teacher="70b", synthetic="10k"),
          "ctl": run_json(world_dir, "1b", "sft_long", "summarization", "full+match-mix-10k", 0.25 * H, steps=6,
                          init="sft", match="mix", synthetic="10k")}
    run_json(world_dir, "1b", "synth_sft", "summarization", "full+synthetic-5k", 0.1 * H, steps=2,
             uses=[use(pool, "annotate", 8, 16)])
    run_json(world_dir, "1b", "two_stage", "summarization", "full+synthetic-5k", 0.4 * H, steps=10)
    for name, method, leaf, lift, dims in (("sft", "sft", "full", 0.0, dict(init="sft")),
                                           ("mix", "mix", "full+synthetic-10k", 0.1, dict(init="sft", teacher="70b", synthetic="10k")),
                                           ("ctl", "sft_long", "full+match-mix-10k", 0.05, dict(init="sft", match="mix", synthetic="10k"))):
        got, rows[f"sum{name}"] = score_cell(np.random.default_rng(5 + int(lift * 100)), "summarization", "rougeL",
                                             150, 0.3, lift)
        cell(world_dir, "1b", method, "summarization", leaf, got, rows[f"sum{name}"], rs[name], **dims)
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    results = tmp_path_factory.mktemp("receipts") / "results"
    rows = write_world(results / WORLD)
    proc = kdtools("report", results=results, env={"WANDB_MODE": "offline", "WANDB_DIR": str(results.parent)})
    return results / WORLD, rows, proc


def test_wandb_gets_the_receipts_table(world):
    world_dir, _, _ = world
    run = next((world_dir.parents[1] / "wandb").glob("offline-run-*"))
    table = json.loads(next(run.glob("files/media/table/receipts_*.table.json")).read_text())
    assert table["columns"][:4] == ["table", "student", "data", "method"]
    assert ["Table 3", "1b", "10k", "GKD"] in [row[:4] for row in table["data"]]
    assert list(run.glob("files/media/images/receipts_figure_*.png"))


def receipts(world_dir: Path) -> dict:
    return {(r["table"], r["student"], r["data"], r["method"]): r
            for r in csv.DictReader((world_dir / "tables" / "receipts.csv").open())}


def num(text: str) -> float | None:
    return None if text == "" else float(text)


def stratified(rows, a, b):
    return Bootstrap(2000, SEED).stratified([(items(rows[a], x), items(rows[b], x)) for x in BENCH])


def test_gains_are_the_reports_paired_intervals(world):
    world_dir, rows, _ = world
    r = receipts(world_dir)[("Table 3", "1b", "10k", "GKD")]
    vs_sft, vs_ctl = stratified(rows, "gkd", "sft"), stratified(rows, "gkd", "ctl")
    assert num(r["gain_vs_sft"]) == pytest.approx(vs_sft.delta, abs=0.02)
    assert (num(r["gain_vs_sft_lo"]), num(r["gain_vs_sft_hi"])) == pytest.approx((vs_sft.lo, vs_sft.hi), abs=1e-5)
    assert (num(r["gain_vs_control_lo"]), num(r["gain_vs_control_hi"])) == pytest.approx((vs_ctl.lo, vs_ctl.hi), abs=1e-5)
    ctl_sft = stratified(rows, "ctl", "sft")
    assert num(r["control_vs_sft_lo"]) == pytest.approx(ctl_sft.lo, abs=1e-5)
    # the same interval as Table 3's GKD-SFT row: one bootstrap for the report
    t3 = {tuple(x[:3]): x for x in csv.reader((world_dir / "tables" / "table3.csv").open())}
    assert t3[("1b", "10k", "GKD-SFT 95% CI")][-1] == f"[{vs_sft.lo:+.2f}, {vs_sft.hi:+.2f}]"


def test_costs_add_up_and_the_sentence_says_so(world):
    world_dir, _, _ = world
    r = receipts(world_dir)[("Table 3", "1b", "10k", "GKD")]
    # GKD = the SFT it continues (1 h) + GKD (2 h, its teacher's forward passes inside); SFT-long = 1 + 0.5
    assert (num(r["kd_cost_h"]), num(r["sft_cost_h"]), num(r["control_cost_h"])) == (3.0, 1.0, 1.5)
    assert r["unit"] == "GPU-h" and r["cost_estimated"] == "False"
    assert num(r["cost_ratio"]) == 3.0 and num(r["extra_cost_h"]) == 2.0
    assert num(r["gain_per_extra_h"]) == pytest.approx(num(r["gain_vs_sft"]) / 2.0, abs=1e-5)
    g, c = num(r["gain_vs_sft"]), num(r["gain_vs_control"])
    assert r["sentence"].startswith(
        f"GKD beat SFT by {abs(g):.1f} points (95% CI {num(r['gain_vs_sft_lo']):.1f} to "
        f"{num(r['gain_vs_sft_hi']):.1f}) ")
    joint = "and" if c > 0 else "but trailed"      # one verb when both gains point the same way
    assert f"{joint} the compute-matched SFT by {abs(c):.1f} (95% CI" in r["sentence"]
    assert r["sentence"].endswith("for 3.0x the GPU-hours (3.00 vs 1.00).")
    assert r["verdict"] in ("paid", "beats SFT only", "no clear gain", "lost")


def test_a_shared_generation_is_counted_once(world):
    world_dir, _, _ = world
    r = receipts(world_dir)
    # SeqKD: its run (1.5 h) + half of the teacher's 4 h of samples (a 3b SeqKD trains on them too)
    seqkd = r[("Table 1", "8b", "full", "SeqKD")]
    assert num(seqkd["kd_cost_h"]) == pytest.approx(1.5 + 2.0)
    # Mix used all 16 annotated rows, the 5k 2-Stage the first 8: rows 0-7 are split two ways,
    # rows 8-15 are Mix's alone -> Mix 0.75 h + (8 h / 2) / 2 + 8 h / 2 = 6.75 h
    mix = r[("Table 2", "1b", "summarization", "Mix")]
    assert num(mix["kd_cost_h"]) == pytest.approx(0.75 + 2.0 + 4.0)
    assert num(mix["control_cost_h"]) == pytest.approx(0.25 + 0.25)
    summary = json.loads((world_dir / "tables" / "report.json").read_text())["receipts"]
    for gen, total in (("data/seqkd/70b/general/full-x5", 4 * H), ("data/annotated/summarization/70b/10k", 8 * H)):
        info = summary["generations"][gen]
        assert sum(info["shares"].values()) + info["unused_rows_seconds"] == pytest.approx(total)
    assert summary["generations"]["data/annotated/summarization/70b/10k"]["shares"] == {
        "models/1b/mix/summarization/full+synthetic-10k": pytest.approx(6 * H),
        "models/1b/synth_sft/summarization/full+synthetic-5k": pytest.approx(2 * H)}


def test_divide_row_by_row():
    share, rest = costs.divide(90.0, 100, {"a": 20, "b": 100, "c": 100})
    assert share == pytest.approx({"a": 6.0, "b": 42.0, "c": 42.0}) and rest == 0
    share, rest = costs.divide(100.0, 100, {"a": 50, "b": 50})
    assert share == pytest.approx({"a": 25.0, "b": 25.0}) and rest == pytest.approx(50.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        used = {i: int(x) for i, x in enumerate(rng.integers(0, 150, rng.integers(1, 6)))}
        share, rest = costs.divide(77.0, 120, used)
        assert sum(share.values()) + rest == pytest.approx(77.0)
        assert all(share[i] <= share[j] + 1e-9 for i in used for j in used if used[i] <= used[j])


def test_missing_costs_and_controls_are_dashes(world):
    world_dir, _, proc = world
    r = receipts(world_dir)
    est = r[("Table 3", "3b", "10k", "GKD")]                     # no run.json: estimated, marked
    assert est["cost_estimated"] == "True" and num(est["kd_cost_h"]) > num(est["sft_cost_h"]) > 0
    assert est["unit"] == "CPU core-h"                            # the toy world's plan estimates a CPU
    mixed = r[("Table 3", "1b", "20k", "GKD")]                    # SFT on a CPU, GKD on a GPU
    assert mixed["kd_cost_h"] == "" and mixed["cost_ratio"] == "" and "different devices" in mixed["why"]
    assert mixed["gain_vs_sft"] != "" and mixed["gain_vs_control"] == ""
    assert "no compute-matched SFT yet" in mixed["sentence"]
    assert "no compute-matched SFT evaluated yet" in mixed["why"]
    none = r[("Table 3", "8b", "10k", "GKD")]                     # nothing evaluated
    assert none["gain_vs_sft"] == none["kd_cost_h"] == "" and none["verdict"] == "-"
    assert "not evaluated yet" in none["sentence"]
    gkd2 = r[("Table 2", "1b", "summarization", "GKD")]          # GKD on a task adds no steps
    assert "step-matched control" in gkd2["why"]
    md = (world_dir / "tables" / "receipts.md").read_text()
    assert "| Table 3 | 8b | 10k | GKD | - | - | - | - | - | - | - | - |" in md
    assert "~" in md.split("| Table 3 | 3b | 10k |")[1].splitlines()[0]
    assert "Receipts (tables/receipts.md)" in proc.stdout


def test_receipts_figure(world):
    world_dir, _, _ = world
    png = world_dir / "figures" / "receipts.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((world_dir / "tables" / "report.json").read_text())
    assert summary["figures"]["receipts"]["points"] > 0
    empty = {"unit": "GPU-h", "panels": {"1b": {"GKD": [None], "SFT-long (compute-matched)": [None],
                                                "SFT": [{"x": 1.0, "y": 0.0, "lo": None, "hi": None,
                                                         "marked": False, "label": "10k", "estimated": False}]}}}
    assert figures.build("receipts", empty) == (None, 0)       # SFT alone: nothing to compare, not drawn


def test_model_cards_carry_scores_intervals_and_receipts(world):
    world_dir, rows, _ = world
    card = (world_dir / "models" / "1b" / "gkd" / "general" / "10k" / "README.md").read_text()
    from huggingface_hub import ModelCard

    parsed = ModelCard(card)
    assert parsed.data.library_name == "transformers" and "knowledge-distillation" in parsed.data.tags
    assert {r.metric_type for r in parsed.data.eval_results} == set(BENCH)
    for needle in ("| teacher | 70b (`/teacher/70b`) |", "lmbda 0.5, beta 0.5", "size 10k (50 rows)",
                   "| config hash |", "2 GPU-hours", "## Receipts: did distillation pay?",
                   "(the distilled model): GKD beat SFT by"):
        assert needle in card, needle
    boot = Bootstrap(2000, SEED)
    bbh = items(rows["gkd"], "bbh")
    iv = boot.interval(bbh.value, boot.draws(bbh), bbh.n)
    assert f"| general | bbh | {bbh.value:.2f} | {iv.lo:.2f} to {iv.hi:.2f} | {bbh.n} |" in card
    sft_card = (world_dir / "models" / "1b" / "sft" / "general" / "10k" / "README.md").read_text()
    assert "(its SFT baseline)" in sft_card and "| teacher | none |" in sft_card
    ctl_card = (world_dir / "models" / "1b" / "sft_long" / "general" / "10k+match-gkd" / "README.md").read_text()
    assert "(its compute-matched SFT)" in ctl_card and "SFT-long (the compute-matched SFT control)" in ctl_card


def test_measure_counts_what_the_job_holds(monkeypatch):
    import torch

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "3")
    started = time.time() - 10
    got = costs.measure(started, earlier_s=5.0)
    assert got["device"] == "cpu" and got["gpu_seconds"] is None and got["unit"] == "CPU core-s"
    assert got["nodes"] == 3 and got["devices_per_node"] == 2 * torch.get_num_threads()
    assert got["device_seconds"] == pytest.approx(got["wall_s"] * got["devices_per_node"] * 3 + 5.0, abs=1e-2)


def test_measure_on_gpus_counts_the_gpus_held(monkeypatch):
    """The CUDA branch's arithmetic (no GPU here: torch.cuda's answers are substituted): 8 GPUs per
    node held by Slurm even when a rank sees one, times 2 nodes, are GPU-seconds."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setenv("WORLD_SIZE", "16")
    monkeypatch.delenv("SLURM_JOB_NUM_NODES", raising=False)
    monkeypatch.delenv("SLURM_NNODES", raising=False)
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "8")
    got = costs.measure(time.time() - 100)
    assert (got["device"], got["unit"], got["nodes"], got["devices_per_node"]) == ("gpu", "GPU-s", 2, 8)
    assert got["gpu_seconds"] == got["device_seconds"] == pytest.approx(got["wall_s"] * 16, abs=0.01)
