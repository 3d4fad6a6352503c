"""Training as several processes, for real: `accelerate launch --num_processes 2` (gloo, CPU) on
the smoke world. Only the main process takes the lock, writes the manifest and logs to W&B; at
the same global batch the loss curve is the one a single process gives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import kdtools

pytestmark = pytest.mark.slow
STEPS = "6"   # 6 optimizer steps x 8 rows: inside the first epoch of the 50-row 10k subset, so one
              # process and two see exactly the same global batches (no wrap-around padding)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_ranks(*args: str, results: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`kdtools <args>` under accelerate launch with 2 processes (`--multi_gpu` is accelerate's
    multi-process switch; without CUDA the ranks meet over gloo on the CPU)."""
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "kdtools.cli", "--world", "smoke", "--results", str(results), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=results.parent, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def metrics(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())["metrics"]


def one_and_two_ranks(results: Path, tmp_path: Path, *args: str) -> tuple[dict, dict]:
    """run.json metrics of `kdtools <args>` run as one process and as two ranks."""
    one, two = tmp_path / "one", tmp_path / "two"
    kdtools(*args, "--out", str(one), results=results)
    proc = two_ranks(*args, "--out", str(two), results=results)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return metrics(one), metrics(two)


def curves_match(one: list, two: list) -> None:
    assert [s for s, _ in one] == [s for s, _ in two]
    assert max(abs(a - b) for (_, a), (_, b) in zip(one, two, strict=True)) <= 1e-4, (one, two)


@pytest.fixture(scope="module")
def trained(smoke_results):
    """The 1b SFT-S and the 70b teacher T_s on 10k (one process each)."""
    for model in ("1b", "70b"):
        kdtools("sft", "--model", model, "--data", "10k", results=smoke_results)
    return smoke_results


def test_sft_on_two_ranks_is_one_run_with_the_single_process_curve(smoke_results, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    kdtools("sft", "--model", "1b", "--data", "10k", "--max-steps", STEPS, "--out", str(one), results=smoke_results)
    wandb_dir = tmp_path / "wandb"
    proc = two_ranks("sft", "--model", "1b", "--data", "10k", "--max-steps", STEPS, "--out", str(two),
                     results=smoke_results, env={"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("done in") == 1                      # rank 0 publishes; rank 1 is quiet
    curves_match(metrics(one)["loss_curve"], metrics(two)["loss_curve"])
    assert metrics(two)["steps"] == int(STEPS)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".two")) == [".two.lock"]
    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs                                    # one W&B run, the main process's


def test_seqkd_on_two_ranks_samples_once_then_both_train(trained, tmp_path):
    """SeqKD's teacher samples are written by the main process while the other rank waits for
    them on the file system, then both train."""
    seqkd = tmp_path / "seqkd"
    proc = two_ranks("seqkd", "--student", "1b", "--data", "10k", "--max-steps", "2", "--out", str(seqkd),
                     results=trained)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert metrics(seqkd)["steps"] == 2 and proc.stderr.count("done in") == 1


def test_a_refused_job_stops_every_rank_with_one_error_line(trained, tmp_path):
    """The output holds a finished run of another config: the main process says so once, every
    rank exits 2, and the finished run is untouched."""
    out = tmp_path / "out"
    kdtools("sft", "--model", "1b", "--data", "10k", "--max-steps", "2", "--out", str(out), results=trained)
    before = (out / "run.json").read_text()
    proc = two_ranks("sft", "--model", "1b", "--data", "10k", "--max-steps", "3", "--out", str(out),
                     results=trained)
    assert proc.returncode != 0
    assert proc.stderr.count("error:") == 1 and "different config" in proc.stderr, proc.stderr[-3000:]
    assert (out / "run.json").read_text() == before


def test_on_policy_gkd_on_two_ranks_samples_what_one_process_samples(trained, tmp_path):
    """lambda 1 (every step samples): each micro-batch draws from a generator seeded by its GLOBAL
    index in the step (kdtools.onpolicy), so two ranks sample exactly what one process samples at
    the same global batch; the loss curves and the trained weights (held-out JSD) match. Without
    kdtools' scaling of the loss by the number of ranks (TRL's GKDTrainer omits it) every
    gradient of two ranks would be halved."""
    a, b = one_and_two_ranks(trained, tmp_path, "gkd", "--student", "1b", "--data", "10k", "--max-steps", STEPS,
                             "--lmbda", "1")
    assert a["onpolicy_steps"] == b["onpolicy_steps"] == int(STEPS)
    curves_match(a["loss_curve"], b["loss_curve"])
    assert a["tokens_seen"] == b["tokens_seen"]          # the same samples, so the same lengths
    assert abs(a["heldout_jsd_after"] - b["heldout_jsd_after"]) <= 1e-5, (a, b)
    assert b["heldout_jsd_after"] < b["heldout_jsd_before"]


def test_eval_on_two_ranks_writes_one_result(trained, tmp_path):
    """lm-eval under accelerate: the main process alone locks, scores and writes the eval JSON."""
    kdtools("data", "--task", "arc", results=trained)
    model = trained / "smoke" / "models" / "1b" / "sft" / "general" / "10k"
    out = tmp_path / "ev" / "arc.json"
    proc = two_ranks("eval", "--model", str(model), "--suite", "arc", "--limit", "4", "--out", str(out),
                     results=trained)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("done in") == 1 and json.loads(out.read_text())["benchmarks"]["arc"]["n"] == 4
    assert sorted(p.name for p in out.parent.iterdir()) == [".arc.json.lock", "arc.json", "arc.samples.jsonl"]
