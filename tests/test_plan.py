"""`kdtools plan` through the real CLI: the paper grid and the toy demo from the workflow's own
DAG, one verb's job, bad input, Slurm resources that follow the estimate, and on the smoke
world a real calibration and an estimate-vs-actual check of a real run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdtools.cli import app
from kdtools.estimate import estimate, plan_settings, slurm_resources
from kdtools.workload import Settings
from kdtools.world import load_world
from tests.conftest import kdtools, one_line_error

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def plan_json(tmp_path: Path, *args: str, world: str = "paper") -> dict:
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    proc = kdtools("plan", *args, "--json", results=results, world=world)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def paper_grid(tmp_path_factory) -> dict:
    return plan_json(tmp_path_factory.mktemp("paper"), "all_tables")


def test_paper_grid_counts_follow_the_workflow(paper_grid):
    rules = paper_grid["rules"]
    # the same per-rule job counts as the workflow's dry run (tests/test_workflow.py)
    assert {r: v["jobs"] for r, v in rules.items()} == {
        "data": 1, "data_task": 3, "sft": 52, "gkd": 39, "eval": 148, "gkd_variant": 11, "seqkd": 1,
        "synth": 3, "annotate": 3, "gkd_synthetic": 54, "eval_floor": 4, "report": 1}
    total = paper_grid["total"]
    assert total["done"] == 0 and total["jobs"] == 320
    assert 1_000 < total["gpu_hours"] < 100_000  # "thousands of H100-hours"
    assert total["fits"] and total["trained_tokens"] > 1e10 and total["disk_gb"] > 1000
    assert rules["gkd"]["generated_tokens"] > 0 and rules["sft"]["generated_tokens"] == 0
    assert total["teacher_cache"]["gpu_hours_saved"] > 0


def test_paper_jobs_are_sized_by_their_models(paper_grid):
    jobs = {j["job"]: j for j in paper_grid["jobs"]}
    big, small = jobs["sft 70b general/full"], jobs["sft 1b general/full"]
    assert big["gpus"] > 8 and small["gpus"] == 1  # 70b: ZeRO-3 over nodes; 1b: one H100
    assert all(j["peak_gb"] <= 0.9 * 80 for j in jobs.values())
    # same tokens: GPU-hours scale with the matmul parameters (70b / 1b ~ 57x), within overheads
    assert 30 < big["gpu_hours"] / small["gpu_hours"] < 80


def test_other_gpus_change_the_estimate(tmp_path):
    job = ("sft", "--model", "70b", "--data", "full", "--max-runtime-h", "1000")  # sized by memory alone
    h100 = plan_json(tmp_path, *job)["jobs"][0]
    h200 = plan_json(tmp_path, *job, "--gpu", "h200")["jobs"][0]
    a100 = plan_json(tmp_path, *job, "--gpu", "a100")["jobs"][0]
    assert h200["gpus"] < h100["gpus"]         # 141 GB: fewer GPUs hold the sharded states
    assert a100["gpu_hours"] > 2.5 * h100["gpu_hours"]  # 312 vs 989 TFLOP/s


def test_one_verb(tmp_path):
    out = plan_json(tmp_path, "gkd", "--student", "3b", "--data", "40k")
    (job,) = out["jobs"]
    assert job["rule"] == "gkd" and job["job"] == "gkd 3b general/40k" and not job["done"]
    assert job["gpus"] >= 2  # the 70b teacher is sharded beside the student
    world = load_world("paper", tmp_path / "results")
    est = estimate(world, "gkd", {"student": "3b", "task": "general", "size": "40k"}, Settings())
    assert job["gpu_hours"] == pytest.approx(est.gpu_hours)
    # the strong teacher goes through the variant rule; its tokens are the same
    variant = plan_json(tmp_path, "gkd", "--student", "3b", "--data", "40k", "--teacher", "70b-it")["jobs"][0]
    assert variant["rule"] == "gkd_variant" and variant["job"].endswith("40k+teacher-70b-it")


def test_several_targets_show_what_reuse_saves(tmp_path):
    out = plan_json(tmp_path, "table1", "fig3")
    assert set(out["targets"]) == {"table1", "fig3"}
    # fig3's 8b GKD on full data is table1's too (and both need the same teacher and SFT-S)
    assert out["reuse"]["gpu_hours_saved"] > 0
    assert out["targets"]["table1"]["gpu_hours_all"] + out["targets"]["fig3"]["gpu_hours_all"] == pytest.approx(
        out["total"]["gpu_hours_all"] + out["reuse"]["gpu_hours_saved"])


def test_toy_demo_is_costed_on_the_cpu(tmp_path):
    out = plan_json(tmp_path, "demo", world="smoke")
    assert out["gpu"] == "cpu"
    assert {r: v["jobs"] for r, v in out["rules"].items()} == {
        "toy_world": 1, "data": 1, "sft": 9, "gkd": 6, "eval": 13, "eval_floor": 1, "report_demo": 1}
    assert all(j["gpus"] in (0, 1) for j in out["jobs"])


@pytest.mark.parametrize("args,needles", [
    (["tabel9"], ["tabel9", "all_tables"]),
    (["all_tables", "--gpu", "tpu"], ["unknown --gpu 'tpu'", "h100"]),
    (["all_tables", "--calibration", "/nonexistent/cal.json"], ["cannot read calibration file", "--calibrate"]),
    (["gkd", "--student", "3b"], ["--data"]),
    (["sft", "--model", "13b", "--data", "10k"], ["13b", "aliases"]),
    (["all_tables", "--safety", "0.5"], ["safety factor"]),
    ([], ["all_tables"]),
])
def test_bad_input_is_one_line(tmp_path, args, needles):
    result = runner.invoke(app, ["--results", str(tmp_path / "results"), "plan", *args])
    one_line_error(result, *needles)


def test_bad_calibration_content(tmp_path):
    bad = tmp_path / "cal.json"
    bad.write_text(json.dumps({"models": {"1b": {"train_flops": 0, "forward_flops": 1, "bandwidth": 1}}}))
    result = runner.invoke(app, ["--results", str(tmp_path), "plan", "all_tables", "--calibration", str(bad)])
    one_line_error(result, "train_flops", "--calibrate")


def dry_run_resources(tmp_path: Path, target: str, *config: str) -> dict[tuple[str, str], dict]:
    """(rule, wildcards) -> resources, as Snakemake would submit them."""
    proc = subprocess.run(
        [SNAKEMAKE, target, "-n", "--cores", "1", "--config", "world=paper", f"results={tmp_path / 'results'}",
         *config], cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = {}
    for block in re.split(r"^rule ", proc.stdout, flags=re.M)[1:]:
        name = block.split(":", 1)[0]
        wc = re.search(r"^    wildcards: (.*)$", block, re.M)
        res = re.search(r"^    resources: (.*)$", block, re.M)
        if wc and res:
            found[(name, wc[1])] = dict(kv.split("=", 1) for kv in res[1].split(", "))
    return found


def test_slurm_resources_follow_the_estimate(tmp_path):
    world = load_world("paper", tmp_path / "results")
    res = dry_run_resources(tmp_path, "table1")
    settings = plan_settings()
    for model in ("8b", "70b"):
        wc = {"model": model, "task": "general", "size": "full"}
        got = res[("sft", f"model={model}, task=general, size=full")]
        want = slurm_resources(world, "sft", wc, settings)
        assert {k: got.get(k) for k in want} == {k: None if v is None else str(v) for k, v in want.items()}
        est = estimate(world, "sft", wc, settings)
        assert int(got["runtime"]) >= est.wall_s * settings.safety / 60  # estimate x safety, rounded up
        assert int(got["runtime"]) < est.wall_s * settings.safety / 60 + 15
    assert res[("sft", "model=70b, task=general, size=full")] != res[("sft", "model=8b, task=general, size=full")]
    # a calibration measured on a slow cluster (a fifth of the datasheet rates) lengthens the limits
    h100 = settings.device
    slow = tmp_path / "slow.json"
    rate = {"train_flops": h100.peak_flops * 0.08, "forward_flops": h100.peak_flops * 0.1,
            "bandwidth": h100.bandwidth * 0.12}
    slow.write_text(json.dumps({"device": "slow H100", "startup_s": 180, "models": {"8b": rate}}))
    calibrated = dry_run_resources(tmp_path, "table1", f"calibration={slow}", "max_runtime_h=1000")
    got = calibrated[("sft", "model=8b, task=general, size=full")]
    want = slurm_resources(world, "sft", {"model": "8b", "task": "general", "size": "full"},
                           plan_settings("h100", str(slow), max_runtime_h=1000))
    assert {k: got.get(k) for k in want} == {k: None if v is None else str(v) for k, v in want.items()}
    assert int(got["runtime"]) > int(res[("sft", "model=8b, task=general, size=full")]["runtime"])


def test_calibrate_then_check_on_smoke(fresh_smoke):
    """A real 2-step SFT and a 2-step on-policy GKD, then --calibrate (timed steps of every smoke
    model, GKD's own sampler included) and --check, with GKD's on-policy sampling on a line of
    its own."""
    results = fresh_smoke
    kdtools("sft", "--model", "1b", "--data", "10k", "--max-steps", "2", results=results)
    kdtools("gkd", "--student", "1b", "--data", "10k", "--init", "base", "--teacher", "70b-it", "--lmbda", "1",
            "--max-steps", "2", results=results)
    cal = results / "smoke" / "plan" / "calibration.json"
    proc = kdtools("plan", "--calibrate", "--check", "--json", results=results)
    out = json.loads(proc.stdout)
    assert cal.is_file() and out["calibration"]["file"] == str(cal)
    written = json.loads(cal.read_text())
    assert set(written["models"]) == {"1b", "3b", "8b", "70b", "70b-it"} and written["startup_s"] > 0
    assert all(m["train_flops"] > 0 and m["bandwidth"] > 0 for m in written["models"].values())
    assert all(set(m["onpolicy_step_s"]) == {"dynamic"} and m["onpolicy_step_s"]["dynamic"] > 0
               for m in written["models"].values())                    # a CPU times the dynamic cache only
    (gkd,) = [r for r in out["check"] if r["rule"] == "gkd"]
    assert gkd["run"].startswith("models/1b/gkd/general/10k+init-base+teacher-70b-it")
    run = json.loads((results / "smoke" / gkd["run"] / "run.json").read_text())["metrics"]
    assert gkd["actual_onpolicy_steps"] == run["onpolicy_steps"] == 2
    assert gkd["actual_onpolicy_s"] == run["onpolicy_sampling_s"] > 0
    assert gkd["estimated_onpolicy_steps"] == pytest.approx(2) and gkd["estimated_onpolicy_s"] > 0
    # the sampler's calibrated rate prices a sampling step within a factor 10 of what it took (a
    # tiny model on 2 shared cores: its small ops slow down several-fold when other jobs load them)
    assert 0.1 < gkd["actual_onpolicy_step_s"] / gkd["estimated_onpolicy_step_s"] < 10
    (row,) = [r for r in out["check"] if r["rule"] == "sft"]
    manifest = json.loads((results / "smoke" / "models" / "1b" / "sft" / "general" / "10k" / "run.json").read_text())
    assert row["actual_wall_s"] == manifest["wall_time_s"] and row["steps"] == 2
    assert row["actual_tokens"] == manifest["metrics"]["tokens_seen"]
    # 2 steps x 8 rows of the measured mean length: within a factor 2 of what the trainer counted
    assert 0.5 < row["actual_tokens"] / row["estimated_tokens"] < 2
    assert 0.25 < row["actual_wall_s"] / row["estimated_wall_s"] < 4
    # the calibration changes the estimate, and the finished run counts as done
    nominal = json.loads(kdtools("plan", "sft", "--model", "1b", "--data", "10k", "--max-steps", "2", "--json",
                                 results=results).stdout)["jobs"][0]
    measured = json.loads(kdtools("plan", "sft", "--model", "1b", "--data", "10k", "--max-steps", "2", "--json",
                                  "--calibration", str(cal), results=results).stdout)["jobs"][0]
    assert measured["wall_h"] != nominal["wall_h"] and measured["done"]
