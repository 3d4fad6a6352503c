"""W&B for real (offline mode): a run's id follows its output folder and config, so a retried
job resumes the same run; `kdtools eval` adds its scores to the run that trained the model."""

from __future__ import annotations

import json

import pytest

from kdtools import tracking
from kdtools.manifest import config_hash
from tests.conftest import kdtools

pytestmark = pytest.mark.slow


def test_a_run_id_is_its_output_and_config(tmp_path):
    a = tracking.run_id(tmp_path / "10k", config_hash({"lr": 1}))
    assert a == tracking.run_id(tmp_path / "x" / ".." / "10k", config_hash({"lr": 1}))   # same folder
    assert a != tracking.run_id(tmp_path / "20k", config_hash({"lr": 1}))
    assert a != tracking.run_id(tmp_path / "10k", config_hash({"lr": 2}))                # another config
    assert len(a) <= 64 and a.replace("-", "").isalnum()


def test_training_and_its_evaluation_log_to_one_run(smoke_results, tmp_path):
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    out = tmp_path / "model"
    kdtools("sft", "--model", "1b", "--data", "10k", "--max-steps", "2", "--out", str(out),
            results=smoke_results, env=env)
    run = json.loads((out / "run.json").read_text())
    assert run["wandb"] == {"id": tracking.run_id(out, run["config_hash"]), "project": "kdtools-smoke",
                            "entity": None}
    kdtools("data", "--task", "arc", results=smoke_results)
    proc = kdtools("eval", "--model", str(out), "--suite", "arc", "--limit", "3", "--out",
                   str(tmp_path / "ev" / "arc.json"), results=smoke_results, env={**env, "KDTOOLS_PROGRESS_SECONDS": "0"})
    assert "eval generate_until: 3/3 requests (100.0%)" in proc.stderr       # progress lines in a log
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(run["wandb"]["id"]) for r in runs)   # one W&B run
    log = next(runs[-1].glob("*.wandb")).read_bytes()
    assert b"eval/arc/accuracy" in log
