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
