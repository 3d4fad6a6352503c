"""`kdtools gkd` for real on the smoke world: teacher/init resolution from the results tree,
on-policy sampling with a KV cache, exact normalisation, variants, and every bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import kdtools, other_tokenizer_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prerequisites(smoke_results):
    """The SFT student (SFT-S) and the same-data teacher T_s on the 10k subset."""
    for model in ("1b", "70b"):
        kdtools("sft", "--model", model, "--data", "10k", results=smoke_results)
    return smoke_results


def run_json(results, *parts):
    return json.loads((results / "smoke" / "models").joinpath(*parts, "run.json").read_text())


def test_gkd_end_to_end(prerequisites):
    results = prerequisites
    kdtools("gkd", "--student", "1b", "--data", "10k", results=results)
    run = run_json(results, "1b", "gkd", "general", "10k")
    cfg, m = run["config"], run["metrics"]
    assert cfg["teacher_weights"].endswith("models/70b/sft/general/10k")       # T_s
    assert cfg["weights"].endswith("models/1b/sft/general/10k")                # SFT-S
    assert cfg["gkd"] == {"lmbda": 0.5, "beta": 0.5, "temperature": 1.0, "max_new_tokens": 16,
                          "loss": "fused"}
    assert m["loss_impl"] == "fused" and m["steps"] > 0
    assert 0 < m["onpolicy_steps"] < m["steps"]          # a mix of on- and off-policy steps
    assert m["loss_last"] >= 0 and m["loss_first"] > 0
    # the student moved towards the teacher on conversations it never trained on
    assert m["heldout_rows"] == 32
    assert m["heldout_jsd_after"] < m["heldout_jsd_before"], m
    assert run["dims"] == {"student": "1b", "method": "gkd", "size": "10k", "task": "general",
                           "init": "sft", "teacher": "70b"}
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(results / "smoke" / "models" / "1b" / "gkd" / "general" / "10k")


def test_compute_matched_control_trains_the_steps_gkd_adds(prerequisites):
    """`sft --match gkd` (sft_long): the SFT-S student continued on the same data for exactly as
    many optimizer steps as GKD added on top of it, read from the finished GKD run."""
    results = prerequisites
    kdtools("gkd", "--student", "1b", "--data", "10k", results=results)   # a no-op when already trained
    gkd = run_json(results, "1b", "gkd", "general", "10k")
    kdtools("sft", "--model", "1b", "--data", "10k", "--match", "gkd", results=results)
    control = run_json(results, "1b", "sft_long", "general", "10k+match-gkd")
    sft = run_json(results, "1b", "sft", "general", "10k")
    assert control["metrics"]["steps"] == gkd["metrics"]["steps"] == control["config"]["train"]["max_steps"]
    assert control["config"]["weights"] == gkd["config"]["weights"]       # both continue SFT-S
    assert control["config"]["data_sha256"] == sft["config"]["data_sha256"]
    assert control["dims"] | {"match_steps": None} == {"student": "1b", "method": "sft_long", "size": "10k",
                                                       "task": "general", "init": "sft", "teacher": None,
                                                       "match": "gkd", "match_steps": None}
    assert control["config"]["match_config_hash"] == gkd["config_hash"]   # a retrained GKD invalidates it
    cost = control["cost"]
    assert cost["device"] == "cpu" and cost["gpu_seconds"] is None and cost["device_seconds"] > 0
    card = (results / "smoke" / "models" / "1b" / "sft_long" / "general" / "10k+match-gkd" / "README.md").read_text()
    assert f"{gkd['metrics']['steps']} extra optimizer steps" in card and control["config_hash"] in card


def test_base_init_and_strong_teacher_are_their_own_cells(prerequisites):
    results = prerequisites
    kdtools("gkd", "--student", "1b", "--data", "10k", "--init", "base", "--teacher", "70b-it",
            "--max-steps", "2", results=results)
    run = run_json(results, "1b", "gkd", "general", "10k+init-base+teacher-70b-it")
    assert run["config"]["weights"].endswith("world/base/1b")
    assert run["config"]["teacher_weights"].endswith("world/base/70b-it")   # used as is
    assert run["dims"]["init"] == "base" and run["dims"]["teacher"] == "70b-it"


def test_fused_and_plain_losses_train_identically_off_policy(prerequisites, tmp_path):
    """With lambda 0 (no sampling) the fused chunked loss and TRL's full-logits loss must give the
    same loss curve and the same weights."""
    import torch
    from safetensors.torch import load_file

    results = prerequisites
    curves, weights = {}, {}
    for loss in ("fused", "plain"):
        out = tmp_path / loss
        kdtools("gkd", "--student", "1b", "--data", "10k", "--lmbda", "0", "--loss", loss,
                "--max-steps", "4", "--out", str(out), results=results)
        run = json.loads((out / "run.json").read_text())
        curves[loss] = [v for _, v in run["metrics"]["loss_curve"]]
        assert run["metrics"]["onpolicy_steps"] == 0
        weights[loss] = load_file(out / "model.safetensors")
    assert curves["fused"] == pytest.approx(curves["plain"], abs=1e-4)
    for key in weights["plain"]:
        torch.testing.assert_close(weights["fused"][key], weights["plain"][key], rtol=1e-4, atol=1e-5)


def test_on_policy_sampling_keeps_the_kv_cache_with_gradient_checkpointing(prerequisites, tmp_path):
    """TRL samples without a KV cache when gradient checkpointing is on; kdtools keeps the cache
    (checkpointing is suspended while sampling) and re-enables checkpointing afterwards."""
    from dataclasses import replace

    from transformers import GenerationMixin

    from kdtools import gkd
    from kdtools.world import load_world

    world = load_world("smoke", prerequisites)
    world = replace(world, train=replace(world.train, gradient_checkpointing=True, max_steps=2))
    seen = []
    original = GenerationMixin.generate

    def spy(self, *args, **kwargs):
        config = kwargs.get("generation_config")
        seen.append((config.use_cache, self.is_gradient_checkpointing))
        return original(self, *args, **kwargs)

    GenerationMixin.generate = spy
    try:
        job = gkd.make_job(world, student="1b", data="10k", lmbda=1.0, out=tmp_path / "gc")
        run = gkd.run(job)
    finally:
        GenerationMixin.generate = original
    assert seen and all(use_cache and not checkpointing for use_cache, checkpointing in seen)
    assert run["metrics"]["onpolicy_steps"] == 2


def test_missing_teacher_names_the_command(smoke_results):
    proc = kdtools("gkd", "--student", "3b", "--data", "20k", results=smoke_results, check=False)
    assert proc.returncode == 2
    assert "kdtools --world smoke sft --model 3b --data 20k" in proc.stderr  # SFT-S first
    proc = kdtools("gkd", "--student", "3b", "--data", "20k", "--init", "base",
                   results=smoke_results, check=False)
    assert proc.returncode == 2 and "kdtools --world smoke sft --model 70b --data 20k" in proc.stderr


@pytest.mark.parametrize("args,needle", [
    (("--lmbda", "1.5"), "--lmbda must be in [0, 1]"),
    (("--beta", "-0.1"), "--beta must be in [0, 1]"),
    (("--temperature", "0"), "--temperature must be positive"),
    (("--loss", "exact"), "--loss must be one of fused, plain"),
    (("--student", "13b"), "unknown model '13b'"),
])
def test_bad_options_are_one_line_exit_2(smoke_results, args, needle):
    base = {"--student": "1b", "--data": "10k"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv]
    proc = kdtools("gkd", *argv, results=smoke_results, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr


def test_teacher_with_another_tokenizer_is_refused(prerequisites, tmp_path):
    """A teacher whose vocabulary differs would make GKD silently wrong: refused before loading."""
    other = other_tokenizer_model(tmp_path / "other-teacher")
    proc = kdtools("gkd", "--student", "1b", "--data", "10k", "--teacher", str(other),
                   results=prerequisites, check=False)
    assert proc.returncode == 2 and "tokenizers differ" in proc.stderr


def test_sweep_grid_point_runs_in_a_folder_of_its_own(prerequisites):
    """sweeps/gkd.yaml as `wandb agent` expands it (${args} -> --key=value) for one grid point,
    run for real on the smoke world (the launcher prefix dropped: no 8 GPUs here; the launch
    itself runs through Slurm in tests/test_slurm.py)."""
    import itertools

    import yaml

    from tests.conftest import REPO

    sweep = yaml.safe_load((REPO / "sweeps" / "gkd.yaml").read_text())
    grid = list(itertools.product(*(p["values"] for p in sweep["parameters"].values())))
    assert len(grid) == 18 and sweep["method"] == "grid"
    point = dict(zip(sweep["parameters"], (0.0, 0.9, 0.7), strict=True))
    args = [f"--{k}={v}" for k, v in point.items()]
    command = [a for c in sweep["command"] for a in (args if c == "${args}" else [c])]
    assert command[:5] == ["${env}", "python", "-m", "kdtools.launch", "--exec"]
    verb = command[command.index("--") + 1:]
    assert verb[:5] == ["gkd", "--student", "1b", "--data", "10k"]
    kdtools(*verb, "--max-steps", "2", results=prerequisites)
    run = run_json(prerequisites, "1b", "gkd", "general", "10k+lmbda-0.0+beta-0.9+temperature-0.7")
    assert {k: run["config"]["gkd"][k] for k in point} == point
