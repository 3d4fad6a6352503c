"""The cost model on cases small enough to compute by hand (kdtools/costmodel.py)."""

from __future__ import annotations

import pytest

from kdtools import costmodel as cm
from kdtools.errors import KdError

# The smoke world's toy 1b: 1 layer, hidden 32, ffn 64, 2 heads of 16, vocab 320, tied embeddings.
TINY = cm.Arch(layers=1, hidden=32, ffn=64, heads=2, kv_heads=2, vocab=320, tied=True)


def test_tiny_parameter_count_by_hand():
    # q,o: 2*32*32 = 2048; k,v: 2*32*32 = 2048; mlp: 3*32*64 = 6144; norms 2*32; final norm 32;
    # embeddings 320*32 = 10240 (tied: once). torch counts 20,576 for the built model (toy manifest).
    assert TINY.block_params == 2048 + 2048 + 6144
    assert TINY.params == 10240 + 64 + 32 + 10240 == 20576
    assert TINY.matmul_params == 10240 + 320 * 32 == 20480


def test_llama_parameter_counts_match_the_hub():
    assert cm.ARCHS["meta-llama/Llama-3.1-8B"].params == 8_030_261_248
    assert cm.ARCHS["meta-llama/Llama-3.1-70B"].params == 70_553_706_496
    assert cm.ARCHS["meta-llama/Llama-3.2-1B"].params == 1_235_814_400


def test_flops_per_token_by_hand():
    # forward: 2 * 20480 + 4 * layers(1) * hidden(32) * context(10) = 40960 + 1280
    assert cm.forward_flops_per_token(TINY, 10) == 42240
    assert cm.train_flops_per_token(TINY, 10, recompute=False) == 3 * 42240  # fwd + 2x bwd
    assert cm.train_flops_per_token(TINY, 10, recompute=True) == 4 * 42240   # + recomputed fwd


def test_train_and_forward_seconds_by_hand():
    rates = cm.Rates(train_flops=1e9, forward_flops=2e9, bandwidth=1e9)
    # 1000 tokens of 20-token sequences: context 10; 126,720 FLOPs each on 2 devices at 1 GFLOP/s
    assert cm.train_seconds(1000, TINY, 20, rates, 2, recompute=False) == pytest.approx(1000 * 126720 / 2e9)
    assert cm.forward_seconds(1000, TINY, 20, rates, 1) == pytest.approx(1000 * 42240 / 2e9)


def test_decode_is_memory_bound_by_hand():
    arch = cm.ARCHS["meta-llama/Llama-3.1-8B"]
    rates = cm.Rates(train_flops=1e15, forward_flops=1e15, bandwidth=1e9)
    # no prompt; 10 new tokens; batch 1: each step reads 2 bytes x params + KV of 5 tokens on average
    kv = 5 * 2 * 32 * 8 * 128 * 2
    step = (arch.params * 2 + kv) / 1e9
    assert cm.generate_seconds(2, 0, 10, arch, rates, batch=1) == pytest.approx(2 * 10 * step, rel=1e-6)
    # batching two sequences shares the weight reads: close to half the time
    assert cm.generate_seconds(2, 0, 10, arch, rates, batch=2) < 0.51 * cm.generate_seconds(2, 0, 10, arch, rates, batch=1)
    # tensor parallel over 4 devices divides the bytes per device
    assert cm.generate_seconds(2, 0, 10, arch, rates, batch=1, shards=4) == pytest.approx(2 * 10 * step / 4, rel=1e-6)


def test_zero_stages_split_the_sixteen_bytes():
    n = 1_000_000_000
    assert cm.state_bytes(n, 0, 8) == 16e9
    assert cm.state_bytes(n, 1, 8) == 4e9 + 12e9 / 8
    assert cm.state_bytes(n, 2, 8) == 2e9 + 14e9 / 8
    assert cm.state_bytes(n, 3, 8) == 16e9 / 8
    assert cm.state_bytes(n, 3, 1) == 16e9  # one GPU: nothing to shard
    with pytest.raises(KdError):
        cm.state_bytes(n, 4, 8)


def test_70b_needs_more_than_one_h100_node():
    arch, h100 = cm.ARCHS["meta-llama/Llama-3.1-70B"], cm.device("h100")
    eight = cm.train_memory(arch, 4096, 1, 3, 8, recompute=True)
    thirty_two = cm.train_memory(arch, 4096, 1, 3, 32, recompute=True)
    assert eight.states == pytest.approx(16 * arch.params / 8)
    assert not cm.fits(eight, h100) and cm.fits(thirty_two, h100)
    assert cm.fits(eight, cm.device("h200")) is False  # 141 GB of states alone


def test_teacher_and_chunked_logits_in_kd_memory():
    student, teacher = cm.ARCHS["meta-llama/Llama-3.2-1B"], cm.ARCHS["meta-llama/Llama-3.1-70B"]
    plain = cm.train_memory(student, 4096, 1, 3, 8, recompute=True)
    kd = cm.train_memory(student, 4096, 1, 3, 8, recompute=True, teacher=teacher, logit_chunk=1024)
    assert kd.teacher > teacher.params * 2 / 8  # its bf16 shard (+ one layer of activations)
    assert kd.logits == pytest.approx(2 * cm.logits_bytes(student, 1024))  # two heads, one chunk
    assert plain.logits == cm.logits_bytes(student, 4096)


def test_disk_by_hand():
    assert cm.checkpoint_bytes(TINY, 4) == 4 * 20576
    assert cm.teacher_cache_bytes(1000, 64) == 1000 * 64 * 6


def test_unknown_gpu():
    with pytest.raises(KdError, match="unknown --gpu 'tpu'"):
        cm.device("tpu")


# --- GKD's on-policy sampler (issue 15) -----------------------------------------------------------

def test_on_policy_sampling_is_priced_at_the_samplers_measured_step():
    """8 sequences, 896-token prompts, 128 sampled tokens, the 1B shape on an H200: HBM alone
    says 0.16 s (1.2 ms a step); the sampler measured 13.6 ms a step with the dynamic cache
    (1.74 s) and generate 3.6 ms with the static one."""
    arch, rates = cm.ARCHS["meta-llama/Llama-3.2-1B"], cm.nominal_rates(cm.device("h200"))
    hbm = cm.generate_seconds(8, 896, 128, arch, rates, batch=8)
    assert hbm == pytest.approx(0.158, abs=0.001)                 # vLLM-style generation is unchanged
    prefill = 8 * 896 * cm.forward_flops_per_token(arch, 448) / rates.forward_flops
    assert hbm / 128 == pytest.approx(1.2e-3, rel=0.05)             # the 1.2 ms, prefill included
    dynamic = cm.onpolicy_seconds(8, 896, 128, arch, rates, batch=8, static=False)
    static = cm.onpolicy_seconds(8, 896, 128, arch, rates, batch=8, static=True)
    assert dynamic - prefill == pytest.approx(128 * 13.6e-3, rel=0.02)   # the H200's 1.74 s
    assert static - prefill == pytest.approx(128 * 3.6e-3, rel=0.02)
    # the floor is per layer: the 8B's 32 layers double it; a large batch is memory bound again
    big = cm.ARCHS["meta-llama/Llama-3.1-8B"]
    assert cm.sampler_floor(big, rates, static=False) == pytest.approx(2 * 13.6e-3)
    assert cm.sampler_floor(arch, cm.nominal_rates(cm.device("cpu")), static=False) == 0.0  # CPU: compute bound


def test_a_calibrated_sampler_step_replaces_the_floor():
    arch = cm.ARCHS["meta-llama/Llama-3.2-1B"]
    rates = cm.Rates(1e15, 1e15, 4e12, sampler_layer_s=cm.SAMPLER_LAYER_S,
                     sampler_step_s={"static": 5e-3, "dynamic": 20e-3})
    assert cm.sampler_floor(arch, rates, static=True) == 5e-3
    assert cm.sampler_floor(arch, rates, static=False) == 20e-3
    cpu = cm.Rates(1e9, 1e9, 1e9, sampler_step_s={"dynamic": 0.05})   # a CPU calibration times only 'dynamic'
    assert cm.onpolicy_seconds(1, 0, 10, TINY, cpu, batch=1, static=False) == pytest.approx(10 * 0.05, rel=1e-3)


def test_zero3_gathers_the_student_once_per_sampling_step_by_hand():
    arch, h100 = cm.ARCHS["meta-llama/Llama-3.1-8B"], cm.device("h100")
    # 8 GPUs of one node: 7/8 of 16 GB over NVLink at 450 GB/s; 16 GPUs on two nodes: the network
    assert cm.gather_seconds(arch, h100, 8, 8) == pytest.approx(arch.params * 2 * 7 / 8 / 450e9)
    assert cm.gather_seconds(arch, h100, 16, 8) == pytest.approx(arch.params * 2 * 15 / 16 / 50e9)
    assert cm.gather_seconds(arch, h100, 1, 8) == 0.0


def test_gkd_estimates_carry_their_on_policy_part():
    from kdtools.estimate import estimate
    from kdtools.workload import Settings
    from kdtools.world import load_world

    world = load_world("paper")
    wc = {"student": "1b", "task": "general", "size": "40k"}
    sharded = estimate(world, "gkd", wc, Settings(gpu="h100", nodes=1))             # ZeRO-3 on 8 GPUs
    one = estimate(world, "gkd", wc, Settings(gpu="h100", nodes=1, gpus_per_node=1))
    off = estimate(world, "gkd", wc, Settings(gpu="h100", nodes=1), {"lmbda": 0.0})
    assert sharded.gpus == 8 and one.gpus == 1
    assert off.onpolicy_s == 0 and off.onpolicy_steps == 0
    assert 0 < sharded.onpolicy_s < sharded.wall_s and sharded.onpolicy_steps > 0
    # one GPU samples everything with the static cache; 8 ZeRO-3 ranks each an eighth, dynamic
    arch = cm.ARCHS["meta-llama/Llama-3.2-1B"]
    static, dynamic = (cm.sampler_floor(arch, cm.nominal_rates(cm.device("h100")), s) for s in (True, False))
    assert one.onpolicy_s / sharded.onpolicy_s == pytest.approx(8 * static / dynamic, rel=0.15)
    assert sharded.wall_s - off.wall_s > sharded.onpolicy_s * 0.9   # sampling is on the job's clock
