"""`kdtools toy`: the embedded world is complete, deterministic, cached, rebuilt on change."""

from __future__ import annotations

import json

import pytest

from tests.conftest import kdtools

pytestmark = pytest.mark.slow
ALIASES = ("1b", "3b", "8b", "70b", "70b-it")


def test_world_is_complete(smoke_results):
    world = smoke_results / "smoke" / "world"
    run = json.loads((world / "run.json").read_text())
    params = [run["models"][a]["params"] for a in ("1b", "3b", "8b", "70b")]
    assert all(run["models"][a]["corpus_loss"] > 0 for a in ALIASES)
    assert params == sorted(params) and len(set(params)) == 4, params
    for rel in ("data/instructions.jsonl", "data/it_instructions.jsonl", "corpus/pretrain.jsonl",
                "tokenizer/tokenizer.json"):
        assert (world / rel).is_file(), rel
    for bench in ("bbh", "gpqa", "mmlu_pro", "ifeval", "infobench"):
        assert (world / "benchmarks" / bench / "test.jsonl").is_file(), bench
    for task in ("translation", "summarization", "arc"):
        for split in ("train", "dev", "test"):
            assert (world / "tasks" / task / f"{split}.jsonl").is_file(), (task, split)
    assert len((world / "data" / "instructions.jsonl").read_text().splitlines()) == 600


def test_base_models_load_and_70b_it_differs(smoke_results):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = smoke_results / "smoke" / "world" / "base"
    models = {a: AutoModelForCausalLM.from_pretrained(base / a) for a in ALIASES}
    tokenizer = AutoTokenizer.from_pretrained(base / "1b")
    assert all(m.config.vocab_size == len(tokenizer) for m in models.values())
    teacher, tuned = models["70b"].state_dict(), models["70b-it"].state_dict()
    assert any(not torch.equal(teacher[k], tuned[k]) for k in teacher)


def test_cached_then_deterministic_then_rebuilt_on_change(smoke_results, tmp_path):
    world = smoke_results / "smoke" / "world"
    stamp = (world / "run.json").stat().st_mtime_ns
    assert "up to date" in kdtools("toy", results=smoke_results).stderr
    assert (world / "run.json").stat().st_mtime_ns == stamp

    # The same seed and toy section under another name builds an identical world.
    from kdtools.world import load_world

    text = load_world("smoke").file.read_text().replace("world: smoke", "world: twin")
    twin_file = tmp_path / "twin.yaml"
    twin_file.write_text(text)
    kdtools("toy", results=smoke_results, world=str(twin_file))
    twin = smoke_results / "twin" / "world"
    for rel in ("data/instructions.jsonl", "data/it_instructions.jsonl", "corpus/pretrain.jsonl",
                "tokenizer/tokenizer.json", "benchmarks/gpqa/test.jsonl", "tasks/arc/train.jsonl"):
        assert (twin / rel).read_bytes() == (world / rel).read_bytes(), rel
    import torch
    from safetensors.torch import load_file

    for alias in ALIASES:
        a = load_file(world / "base" / alias / "model.safetensors")
        b = load_file(twin / "base" / alias / "model.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)

    first = json.loads((twin / "run.json").read_text())
    twin_file.write_text(text.replace("steps: 20", "steps: 21"))
    kdtools("toy", results=smoke_results, world=str(twin_file))
    rebuilt = json.loads((twin / "run.json").read_text())
    assert rebuilt["config_hash"] != first["config_hash"]
    assert rebuilt["models"]["70b-it"]["instruct_steps"] == 21
