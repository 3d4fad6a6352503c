"""`kdtools seqkd` for real: teacher samples (cached, resumable) then cross-entropy on them."""

from __future__ import annotations

import json

import pytest

from tests.conftest import kdtools

pytestmark = pytest.mark.slow


def test_seqkd_end_to_end(smoke_results):
    kdtools("sft", "--model", "70b", "--data", "10k", results=smoke_results)
    kdtools("seqkd", "--student", "1b", "--data", "10k", "--samples", "2", "--max-steps", "3",
            results=smoke_results)
    samples = smoke_results / "smoke" / "data" / "seqkd" / "70b" / "general" / "10k-x2"
    gen = json.loads((samples / "run.json").read_text())
    assert gen["prompts"] == 50 and gen["pairs"] + gen["dropped_empty"] == 100
    pairs = [json.loads(line) for line in (samples / "pairs.jsonl").read_text().splitlines()]
    assert all(p["messages"][-1]["role"] == "assistant" and p["messages"][-1]["content"].strip() for p in pairs)
    run = json.loads((smoke_results / "smoke" / "models" / "1b" / "seqkd" / "general" / "10k" / "run.json").read_text())
    assert run["verb"] == "seqkd" and run["dims"]["teacher"] == "70b" and run["dims"]["samples"] == 2
    assert run["config"]["teacher_weights"].endswith("models/70b/sft/general/10k")
    assert run["metrics"]["rows"] == len(pairs)
    # a rerun reuses both the samples and the model
    proc = kdtools("seqkd", "--student", "1b", "--data", "10k", "--samples", "2", "--max-steps", "3",
                   results=smoke_results)
    assert "up to date" in proc.stderr


def test_seqkd_missing_teacher(smoke_results):
    proc = kdtools("seqkd", "--student", "1b", "--data", "40k", results=smoke_results, check=False)
    assert proc.returncode == 2 and "kdtools --world smoke sft --model 70b --data 40k" in proc.stderr
