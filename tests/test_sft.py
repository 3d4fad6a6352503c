"""`kdtools sft` for real: the CLI trains a smoke-world student, the loss falls, the model loads,
run.json is complete; a rerun is a no-op; accumulation normalises by the global token count."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from tests.conftest import kdtools

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(smoke_results):
    proc = kdtools("sft", "--model", "1b", "--data", "40k", results=smoke_results)
    out = smoke_results / "smoke" / "models" / "1b" / "sft" / "general" / "40k"
    return out, proc


def test_loss_falls_and_manifest_is_complete(trained):
    out, _ = trained
    run = json.loads((out / "run.json").read_text())
    metrics = run["metrics"]
    assert metrics["loss_last_fifth_mean"] < metrics["loss_first_fifth_mean"] - 0.25, metrics
    used = metrics["rows"] - metrics["rows_dropped_too_long"]
    assert metrics["rows"] == 200 and 0.8 * 200 <= used <= 200
    # 2 epochs of micro-batches of 4, two micro-batches per optimizer step
    assert metrics["steps"] == 2 * math.ceil(math.ceil(used / 4) / 2)
    assert metrics["tokens_seen"] > 0
    assert len(metrics["loss_curve"]) >= 10
    for key in ("config", "config_hash", "versions", "git_commit", "wall_time_s", "started_at"):
        assert run[key] is not None, key
    assert run["config"]["train"]["learning_rate"] == 2e-3
    assert {"torch", "transformers", "trl"} <= set(run["versions"])
    assert run["dims"] == {"student": "1b", "method": "sft", "size": "40k", "task": "general",
                           "init": "base", "teacher": None}


def test_model_loads_and_chats(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = trained
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                           add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert not list(out.parent.glob(".*partial"))  # the staging folder was renamed away


def test_logged_to_wandb_offline(trained, smoke_results):
    runs = list((smoke_results / "wandb").glob("offline-run-*"))
    assert runs, "no offline W&B run was written"


def test_rerun_is_a_no_op(trained, smoke_results):
    out, _ = trained
    stamp = (out / "run.json").stat().st_mtime_ns
    proc = kdtools("sft", "--model", "1b", "--data", "40k", results=smoke_results)
    assert "up to date" in proc.stderr
    assert (out / "run.json").stat().st_mtime_ns == stamp


def test_different_config_needs_force(trained, smoke_results):
    proc = kdtools("sft", "--model", "1b", "--data", "40k", "--lr", "1e-3",
                   results=smoke_results, check=False)
    assert proc.returncode == 2 and "--force" in proc.stderr


def test_domain_task_sft_starts_from_the_general_full_sft(fresh_smoke):
    args = ("sft", "--model", "3b", "--task", "translation", "--data", "full")
    proc = kdtools(*args, results=fresh_smoke, check=False)
    assert proc.returncode == 2 and "kdtools --world smoke data --task translation" in proc.stderr
    kdtools("data", "--task", "translation", results=fresh_smoke)
    proc = kdtools(*args, results=fresh_smoke, check=False)
    assert proc.returncode == 2 and "kdtools --world smoke sft --model 3b --data full" in proc.stderr
    kdtools("sft", "--model", "3b", "--data", "full", "--max-steps", "3", results=fresh_smoke)
    kdtools(*args, results=fresh_smoke)
    run = json.loads((fresh_smoke / "smoke" / "models" / "3b" / "sft" / "translation" / "full"
                      / "run.json").read_text())
    assert run["config"]["init"] == "sft"
    assert run["config"]["weights"].endswith("models/3b/sft/general/full")
    assert run["metrics"]["rows"] == 40


def test_accumulation_normalises_by_global_tokens(smoke_results, tmp_path):
    """4 rows x 2 accumulation steps must give the same update as 8 rows x 1: the loss is summed
    over micro-batches and divided by the total assistant-token count, not averaged per batch."""
    import torch
    from safetensors.torch import load_file

    from kdtools import sft
    from kdtools.world import load_world

    world = load_world("smoke", smoke_results)
    weights = {}
    for per_device in (4, 8):
        w = replace(world, train=replace(world.train, per_device_batch_size=per_device,
                                         max_steps=2, learning_rate=1e-3))
        job = sft.make_job(w, model="1b", data="10k", out=tmp_path / f"pd{per_device}")
        sft.run(job)
        weights[per_device] = load_file(tmp_path / f"pd{per_device}" / "model.safetensors")
    base = load_file(smoke_results / "smoke" / "world" / "base" / "1b" / "model.safetensors")
    for name, tensor in weights[8].items():
        assert not torch.equal(tensor, base[name]) or "norm" in name  # training moved the weights
        torch.testing.assert_close(weights[4][name], tensor, rtol=1e-4, atol=1e-5)


def test_matched_steps_follow_each_kd_runs_start(tmp_path):
    """The control's step count from hand-made manifests: GKD on general data continued this SFT
    (all its steps are extra); SeqKD and a domain task's Mix and 2-Stage started where the SFT did
    (their steps, 2-Stage's two stages together, minus the SFT's); no extra steps is refused."""
    from kdtools import paths
    from kdtools.errors import KdError
    from kdtools.sft import matched_steps
    from kdtools.world import load_world

    world = load_world("smoke", tmp_path)

    def made(model, method, task, size, steps, weights="/start", variant=""):
        folder = paths.model_dir(tmp_path, "smoke", model, method, task, size, variant)
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"config": {"weights": str(weights)}, "config_hash": method,
                                                     "metrics": {"steps": steps}}))
        return folder

    sft = made("1b", "sft", "general", "10k", 12)
    made("1b", "gkd", "general", "10k", 14, weights=sft)
    made("1b", "seqkd", "general", "10k", 60)
    assert matched_steps(world, "1b", "general", "10k", "gkd", None, sft)[0] == 14
    assert matched_steps(world, "1b", "general", "10k", "seqkd", None, sft)[0] == 60 - 12
    task_sft = made("1b", "sft", "arc", "full", 30)
    made("1b", "mix", "arc", "full", 45, variant="synthetic-10k")
    made("1b", "synth_sft", "arc", "full", 4, variant="synthetic-5k")
    made("1b", "two_stage", "arc", "full", 30, variant="synthetic-5k")
    made("1b", "gkd", "arc", "full", 30)
    assert matched_steps(world, "1b", "arc", "full", "mix", "10k", task_sft)[0] == 15
    assert matched_steps(world, "1b", "arc", "full", "two_stage", "5k", task_sft)[0] == 4 + 30 - 30
    with pytest.raises(KdError, match="no more student steps than this SFT"):
        matched_steps(world, "1b", "arc", "full", "gkd", None, task_sft)
    with pytest.raises(KdError, match="needs the finished two_stage run"):
        matched_steps(world, "1b", "arc", "full", "two_stage", "10k", task_sft)
