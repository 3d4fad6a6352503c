"""GPU paths (bf16 training), run only where CUDA is present; skipped on CPU."""

from __future__ import annotations

import json

import pytest

from tests.conftest import kdtools

pytestmark = pytest.mark.gpu


def test_sft_trains_in_bf16_on_cuda(smoke_results, tmp_path):
    world_file = tmp_path / "bf16.yaml"
    from kdtools.world import load_world

    world_file.write_text(load_world("smoke").file.read_text()
                          .replace("world: smoke", "world: smoke_bf16")
                          .replace("bf16: false", "bf16: true"))
    results = smoke_results
    # reuse the smoke world's models by path; data comes from the smoke subsets
    kdtools("data", "--source", str(results / "smoke" / "world" / "data" / "instructions.jsonl"),
            "--name", "tulu", results=results, world=str(world_file))
    model = str(results / "smoke" / "world" / "base" / "1b")
    kdtools("sft", "--model", model, "--data", "10k", results=results, world=str(world_file))
    run = json.loads((results / "smoke_bf16" / "models" / "1b" / "sft" / "general" / "10k"
                      / "run.json").read_text())
    assert run["config"]["train"]["bf16"] is True
    assert run["metrics"]["loss_last"] < run["metrics"]["loss_first"]
