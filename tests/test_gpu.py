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


def test_liger_fused_jsd_equals_kdtools_fused_loss():
    """liger-kernel's Triton JSD (switched on automatically on CUDA) gives kdtools' loss and
    gradients, with the global-token normalisation."""
    pytest.importorskip("liger_kernel")
    import torch

    from kdtools.gkd_trainer import liger_available, liger_jsd_loss
    from kdtools.losses import fused_generalized_jsd_loss

    assert liger_available()
    g = torch.Generator().manual_seed(0)
    B, T, H, HT, V = 2, 64, 64, 96, 32000
    labels = torch.randint(0, V, (B, T), generator=g).cuda()
    labels[0, :10] = -100
    inputs = [torch.randn(B, T, H, generator=g), torch.randn(V, H, generator=g) / 8,
              torch.randn(B, T, HT, generator=g), torch.randn(V, HT, generator=g) / 10]
    for beta in (0.1, 0.5, 0.9):
        results = []
        for loss_fn in (fused_generalized_jsd_loss, liger_jsd_loss):
            sh, sw, th, tw = (t.cuda().requires_grad_(i < 2) for i, t in enumerate(inputs))
            loss = loss_fn(sh, sw, th, tw, labels, beta=beta, num_items_in_batch=150)
            loss.backward()
            results.append((loss.detach(), sh.grad, sw.grad))
        for ours, liger in zip(*results, strict=True):
            torch.testing.assert_close(liger, ours, rtol=1e-3, atol=1e-5)


def test_gkd_on_cuda_uses_liger_and_trains_like_the_plain_loss(smoke_results, tmp_path):
    """lambda 0: liger's loss (auto on CUDA) and TRL's full-logits loss, same loss curve."""
    pytest.importorskip("liger_kernel")
    curves = {}
    for loss in ("fused", "plain"):
        out = tmp_path / loss
        kdtools("gkd", "--student", "1b", "--data", "10k", "--init", "base", "--teacher", "70b-it",
                "--lmbda", "0", "--loss", loss, "--max-steps", "4", "--out", str(out), results=smoke_results)
        run = json.loads((out / "run.json").read_text())
        assert run["metrics"]["loss_impl"] == ("liger" if loss == "fused" else "plain")
        curves[loss] = [v for _, v in run["metrics"]["loss_curve"]]
    assert curves["fused"] == pytest.approx(curves["plain"], abs=1e-4)


def test_vllm_generation_is_chosen_on_cuda_and_matches_hf_greedy(smoke_results, tmp_path):
    """The generation engine (seqkd, synth, annotate) switches to vLLM on CUDA; greedy outputs
    agree with the HF backend's."""
    pytest.importorskip("vllm")
    from kdtools import generate
    from kdtools.world import load_world

    assert generate._vllm_available()
    world = load_world("smoke", smoke_results)
    model = str(smoke_results / "smoke" / "world" / "base" / "70b-it")
    prompts = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(8)]
    sampling = generate.Sampling(temperature=0, max_new_tokens=8)
    vllm_rows = generate.generate(model, prompts, tmp_path / "vllm", sampling, seed=0,
                                  chat_template=world.chat_template)
    hf = generate.HFBackend(model, world.chat_template).complete(prompts, sampling, 0)
    same = sum(r["completion"] == h[0]["text"] for r, h in zip(vllm_rows, hf, strict=True))
    assert same >= 6, (vllm_rows, hf)  # bf16/fp32 kernels may flip a near-tie or two
