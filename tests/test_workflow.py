"""The Snakemake workflow: the config validates and the DAG expands for every world (dry runs),
through the real snakemake CLI, with the rules calling the kdtools CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import kdtools

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def dry_run(target: str, world: str, tmp_path: Path, *extra: str) -> str:
    proc = subprocess.run(
        [SNAKEMAKE, target, "-n", "--cores", "1", "--printshellcmds",
         "--config", f"world={world}", f"results={tmp_path / 'results'}", *extra],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def job_counts(out: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}


@pytest.mark.parametrize("world", ["paper", "toy"])
def test_snakemake_lint_is_clean(world, tmp_path):
    proc = subprocess.run([SNAKEMAKE, "--lint", "--config", f"world={world}", f"results={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_paper_grid_dry_run(tmp_path):
    out = dry_run("all_tables", "paper", tmp_path)
    counts = job_counts(out)
    assert counts["sft"] == 4 * 10 + 4 * 3  # every model x size; + each model on each domain task
    assert counts["gkd"] == 3 * 10 + 3 * 3  # Table 3 / Figure 2; Table 2's GKD column
    assert counts["data_task"] == 3
    # every cell is evaluated: table3 60, fig1 +10 Base-S, table1 +1 SeqKD, fig3 +1, table2 18 + 3;
    # the fidelity table's T_s at full; and every suite's floor (no model)
    assert counts["eval"] == 93 + 54 + 1
    assert counts["eval_floor"] == 4
    assert "eval --model floor --suite translation" in out
    # Table 2's Mix and 2-Stage at 100k, and Figure 5's two-stage at 5k..100k (9 shared)
    assert counts["gkd_synthetic"] == 18 + 45 - 9
    assert counts["synth"] == 3 and counts["annotate"] == 3
    assert counts["gkd_variant"] == 10 + 1  # Figure 1 (Base-S per size), Figure 3 (70b-it)
    assert counts["seqkd"] == 1          # Table 1
    assert counts["data"] == 1 and "toy_world" not in counts
    assert "sft --model 70b --data 939k" in out
    assert "gkd --student 8b --data full --task general --teacher 70b-it" in out
    assert "gkd --student 8b --data 10k --task general --init base" in out
    assert "sft --model 1b --data full --task translation" in out


def test_multi_gpu_rules_launch_one_rank_per_gpu_on_the_cost_models_allocation(tmp_path):
    """Multi-GPU training jobs launch a rank per GPU (kdtools.launch) on the allocation the cost
    model chose for them (kdtools.estimate, the resources of the Slurm profile); generation is
    one process over a node's GPUs."""
    from kdtools.estimate import plan_settings, slurm_resources
    from kdtools.world import load_world

    world = load_world("paper", tmp_path / "results")
    big = slurm_resources(world, "sft", {"model": "70b", "task": "general", "size": "full"}, plan_settings())
    mid = slurm_resources(world, "sft", {"model": "8b", "task": "general", "size": "full"}, plan_settings())
    assert big["nodes"] > 1 and mid["tasks_per_node"] > 1  # a 70b does not fit one node; an 8b not one GPU
    assert big["gres"] == f"gpu:{big['tasks_per_node']}" and big["mpi"] == "srun"
    assert big["gpus"] == big["nodes"] * big["tasks_per_node"]
    out = dry_run("table1", "paper", tmp_path)
    line = next(x for x in out.splitlines() if "sft --model 70b --data full" in x)
    assert (f"python -m kdtools.launch --exec --nodes={big['nodes']} --tasks-per-node={big['tasks_per_node']} "
            f"--cpus-per-task={big['cpus_per_task']} --gpus -- ") in line
    line = next(x for x in out.splitlines() if "sft --model 8b --data full" in x)
    assert f"--nodes=1 --tasks-per-node={mid['tasks_per_node']} " in line
    out = dry_run("fig5", "paper", tmp_path)
    line = next(x for x in out.splitlines() if " synth --task arc --n 100k" in x)
    assert "kdtools.launch" not in line and "exec" not in line  # generation: one process, vLLM TP


def test_toy_demo_dry_run_builds_the_world_first(tmp_path):
    counts = job_counts(dry_run("demo", "smoke", tmp_path))
    # toy world, data, SFT of 3 students + the teacher and GKD of 3 students on 10k and 20k,
    # the general-suite evaluation of the 12 student cells; for the fidelity table, the general
    # suite's floor and T_s at the world's full size (smoke: "full", one more SFT of the teacher)
    assert counts == {"toy_world": 1, "data": 1, "sft": 8 + 1, "gkd": 6, "eval": 12 + 1, "eval_floor": 1,
                      "report_demo": 1, "demo": 1, "total": 33}


def test_toy_demo_runs_table2_for_its_demo_task(tmp_path):
    """`make demo` on the toy world: Table 3's cells and, for grid.demo_tasks (summarization) and
    grid.demo_students (1b), Table 2's: the task teacher and the student's SFT, GKD, Mix and
    2-Stage, with the synthetic inputs they need; no other task's or student's cells."""
    out = dry_run("demo", "toy", tmp_path)
    assert job_counts(out) == {
        "toy_world": 1, "data": 1, "data_task": 1, "synth": 1, "annotate": 1,
        "sft": 8 + 2,                    # Table 3's SFTs and teachers; the teacher and 1b on the task
        "gkd": 6 + 1, "gkd_synthetic": 1 + 1,
        "eval": 12 + 5 + 1,              # Table 3's cells; Table 2's 4 cells of 1b and its teacher; T_s
        "eval_floor": 2,                 # the fidelity table's floors: general and summarization
        "report_demo": 1, "demo": 1, "total": 46}
    assert "synth --task summarization --n 100k" in out
    task_lines = [line for line in out.splitlines() if "--task summarization" in line]
    assert task_lines and not [line for line in task_lines if re.search(r"--(student|model) (3b|8b)\b", line)]
    assert "--task translation" not in out and "--task arc" not in out
    # every student when a world names none (the schema's default)
    world = tmp_path / "toy-all-students.yaml"
    world.write_text((REPO / "workflow" / "config" / "toy.yaml").read_text().replace("demo_students: [1b]", ""))
    assert job_counts(dry_run("demo", str(world), tmp_path))["total"] == 62


def test_toy_grid_is_the_paper_grid_reduced(tmp_path):
    """`make demo-all`: every table and figure on the toy world's grid (ladder 10k, 20k; "full" =
    20k; synthetic 5k, 20k, 100k): the full-data cells reuse the 20k models instead of training
    on every row."""
    out = dry_run("all_tables", "toy", tmp_path)
    assert job_counts(out) == {
        "toy_world": 1, "data": 1, "data_task": 3, "synth": 3, "annotate": 3, "seqkd": 1,
        "sft": 4 * 2 + 4 * 3,            # every model x (10k, 20k); + each model on each task
        "gkd": 3 * 2 + 3 * 3,            # Table 3; Table 2's GKD column
        "gkd_variant": 2 + 1,            # Figure 1's Base-S per size; Figure 3's 70b-it
        "gkd_synthetic": 9 + 9 * 3,      # Table 2's Mix; Figure 5's two-stage (Table 2's at 100k)
        "sft_long": 6,                   # grid.controls [table3]: the ladder's GKD (Table 1's among them)
        "eval": 12 + 2 + 1 + 1 + 21 + 9 + 27 + 6 + 1,   # ... + T_s at full for the fidelity table
        "eval_floor": 4,                 # every suite's floor (the fidelity table)
        "report": 1, "all_tables": 1, "total": 178}
    assert "seqkd --student 8b --data 20k --task general" in out
    assert "gkd --student 8b --data 20k --task general --teacher 70b-it" in out
    assert " full" not in " ".join(line for line in out.splitlines() if "--task general" in line)
    assert "synth --task arc --n 100k" in out


def test_controls_target_and_grid_controls(tmp_path):
    """`controls`: the compute-matched SFT (sft_long) of every KD cell of Tables 1-3, each waiting for
    the SFT it continues and the KD run whose steps it matches; the paper's all_tables leaves them
    out (grid.controls is off by default: test_paper_grid_dry_run's counts), a world may turn them on."""
    out = dry_run("controls", "paper", tmp_path)
    counts = job_counts(out)
    # Table 3: 3 students x 10 sizes (Table 1's GKD is 8b at full, among them); Table 1's SeqKD;
    # Table 2: Mix and 2-Stage at 100k for 3 students x 3 tasks (its GKD adds no steps over SFT)
    assert counts["sft_long"] == 30 + 1 + 18 and counts["eval"] == 49
    assert "sft --model 3b --data 40k --task general --match gkd" in out
    assert "sft --model 8b --data full --task general --match seqkd" in out
    assert "sft --model 1b --data full --task arc --match two_stage --synthetic 100k" in out
    world = tmp_path / "toy-all.yaml"
    world.write_text((REPO / "workflow" / "config" / "toy.yaml").read_text()
                     .replace("controls: [table3]", "controls: true"))
    counts = job_counts(dry_run("all_tables", str(world), tmp_path))
    assert counts["sft_long"] == 6 + 1 + 18 and counts["total"] == 166 + 2 * 25


def test_demo_report_is_its_own(tmp_path):
    """`demo` ends with a report of its own cells in <world>/demo/; `all_tables`' report waits for
    every cell, so neither writes the other's tables early."""
    out = dry_run("demo", "toy", tmp_path)
    demo_dir = tmp_path / "results" / "toy" / "demo"
    assert f"report --out {demo_dir}" in out
    assert "rule report:" not in out and "rule report_demo:" in out


def test_slurm_profile_dry_run(tmp_path):
    """The Slurm profile parses and sizes jobs per model; a dry run submits nothing."""
    out = dry_run("all_tables", "paper", tmp_path, "--profile", "profiles/slurm")
    assert "sft" in out


def test_bad_world_in_workflow_config(tmp_path):
    proc = subprocess.run([SNAKEMAKE, "demo", "-n", "--cores", "1", "--config", "world=moon"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "unknown world 'moon'" in proc.stdout + proc.stderr


@pytest.mark.parametrize("key", ["wrold=toy"])
def test_misspelt_workflow_config_key(tmp_path, key):
    proc = subprocess.run([SNAKEMAKE, "demo", "-n", "--cores", "1", "--config", key],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "wrold" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_real_run_of_one_cell_then_nothing_to_do(tmp_path):
    """Snakemake runs the chain for one GKD cell for real (toy world -> data -> SFT-S and T_s ->
    gkd -> eval) with the local profile; a second run finds nothing to do."""
    results = tmp_path / "results"
    target = str(results / "smoke" / "evals" / "1b" / "gkd" / "general" / "10k" / "general.json")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "WANDB_MODE": "disabled"}
    cmd = [SNAKEMAKE, target, "--profile", "profiles/local", "--config", "world=smoke",
           f"results={results}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    import json

    result = json.loads(Path(target).read_text())
    assert result["method"] == "gkd" and set(result["metrics"]) >= {"bbh", "gpqa", "ifeval", "infobench", "mmlu_pro"}
    for log in ("toy.log", "data.log", "sft/1b/general/10k.log", "sft/70b/general/10k.log",
                "gkd/1b/general/10k.log"):
        assert (results / "smoke" / "logs" / log).is_file(), log
    again = subprocess.run(cmd + ["-n"], cwd=REPO, capture_output=True, text=True, check=False, env=env)
    assert "Nothing to be done" in again.stdout + again.stderr
    # lose the teacher. Snakemake (>= 7.7, by design) does not rerun for a missing intermediate
    # file whose dependents exist, so the README's recipe names it: -R <file> redoes it and what
    # depends on it (gkd, eval), nothing else
    models = results / "smoke" / "models"
    kept = {p: p.stat().st_mtime_ns for p in (models / "1b" / "sft" / "general" / "10k" / "run.json",
                                              results / "smoke" / "data" / "tulu" / "run.json")}
    teacher = models / "70b" / "sft" / "general" / "10k" / "run.json"
    teacher.unlink()
    redo = subprocess.run(cmd + ["-R", str(teacher)], cwd=REPO, capture_output=True, text=True, check=False, env=env)
    assert redo.returncode == 0, redo.stderr[-4000:]
    ran = sorted(re.findall(r"^(?:local)?rule (\w+):", redo.stdout + redo.stderr, re.M))
    assert ran == ["eval", "gkd", "sft"], redo.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert teacher.is_file()


@pytest.mark.slow
def test_real_run_of_a_two_stage_cell(tmp_path):
    """The synthetic-data chain for real with the local profile: the 70b's general SFT writes
    inputs (synth), the task teacher answers them (annotate), the student trains two-stage from
    its general SFT (gkd_synthetic) and is evaluated on the task; then `report` fills that cell."""
    results = tmp_path / "results"
    target = results / "smoke" / "evals" / "1b" / "two_stage" / "arc" / "full+synthetic-5k" / "arc.json"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "WANDB_MODE": "disabled"}
    cmd = [SNAKEMAKE, str(target), "--profile", "profiles/local", "--config", "world=smoke",
           f"results={results}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ran = sorted(re.findall(r"^(?:local)?rule (\w+):", proc.stdout + proc.stderr, re.M))
    # SFTs: the student's and the 70b's general ones (init, generator), the 70b's on arc (teacher)
    assert ran == ["annotate", "data", "data_task", "eval", "gkd_synthetic", "sft", "sft", "sft",
                   "synth", "toy_world"], ran
    import json

    result = json.loads(target.read_text())
    assert (result["method"], result["synthetic"], result["task"]) == ("two_stage", "5k", "arc")
    assert 0 <= result["metrics"]["accuracy"] <= 100
    pool = results / "smoke" / "data" / "annotated" / "arc" / "70b" / "10k" / "run.json"
    assert pool.is_file()  # the whole pool (the grid's largest size) is annotated once
    kdtools("report", results=results, env={"WANDB_MODE": "disabled"})
    table2 = (results / "smoke" / "tables" / "table2.csv").read_text().splitlines()
    row = next(r.split(",") for r in table2 if r.startswith("1b,"))
    header = table2[0].split(",")
    assert row[header.index("ARC-Challenge 2-Stage")] == f"{result['metrics']['accuracy']:.2f}"
