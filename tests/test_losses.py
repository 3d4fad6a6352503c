"""Invariant tests for kdtools.losses: equal to TRL's GKD loss, the KL endpoints and symmetry hold,
the fused chunked loss equals the plain one in value and gradients, and never builds (N, V) logits;
the top-k (teacher cache) loss is exact at k = V, zero for identical models, a lower bound below.

Run: .venv/bin/python -m pytest tests/test_losses.py
"""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kdtools.losses import (
    chunk_tokens,
    fused_generalized_jsd_loss,
    fused_topk_generalized_jsd_loss,
    generalized_jsd_loss,
    teacher_topk,
    topk_generalized_jsd_loss,
)

B, T, V = 3, 7, 13
HS, HT = 8, 12  # the teacher's hidden size differs from the student's on purpose


def _logits(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, V, generator=g, dtype=dtype) * 2


def _labels(seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :3] = -100  # a prompt
    labels[1, -2:] = -100  # padding
    return labels  # 16 of 21 positions unmasked


def _kl(p_logits, q_logits, temperature=1.0):
    """KL(P || Q) per token, by hand: sum_v P (log P - log Q)."""
    log_p = torch.log_softmax(p_logits / temperature, -1)
    log_q = torch.log_softmax(q_logits / temperature, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


# --- the plain loss is TRL's -------------------------------------------------------------------


@pytest.mark.parametrize("num_items", [None, 11, torch.tensor(11)])
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
@pytest.mark.parametrize("with_labels", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 0.2])
def test_plain_loss_equals_trl(beta, temperature, with_labels, reduction, num_items):
    from trl.experimental.gkd import GKDTrainer

    labels = _labels() if with_labels else None
    ours_s, trl_s = _logits(1).requires_grad_(), _logits(1).requires_grad_()
    teacher = _logits(2)
    kwargs = dict(labels=labels, beta=beta, temperature=temperature, reduction=reduction,
                  num_items_in_batch=num_items)
    ours = generalized_jsd_loss(ours_s, teacher, **kwargs)
    theirs = GKDTrainer.generalized_jsd_loss(trl_s, teacher, **kwargs)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(ours_s.grad, trl_s.grad, atol=1e-6, rtol=0)


def test_plain_loss_equals_trl_float32():
    from trl.experimental.gkd import GKDTrainer

    s, t = _logits(1, torch.float32), _logits(2, torch.float32)
    for beta in (0.0, 0.5, 1.0):
        torch.testing.assert_close(generalized_jsd_loss(s, t, _labels(), beta=beta),
                                   GKDTrainer.generalized_jsd_loss(s, t, _labels(), beta=beta),
                                   atol=1e-5, rtol=0)


# --- invariants of the plain loss ----------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
def test_zero_for_identical_logits(beta):
    s = _logits(1)
    assert generalized_jsd_loss(s, s.clone(), _labels(), beta=beta).abs() < 1e-12


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_beta_endpoints_are_the_two_kl_directions(temperature):
    s, t, labels = _logits(1), _logits(2), _labels()
    mask = labels != -100
    forward = _kl(t, s, temperature)[mask].mean()  # KL(teacher || student)
    reverse = _kl(s, t, temperature)[mask].mean()  # KL(student || teacher)
    torch.testing.assert_close(generalized_jsd_loss(s, t, labels, beta=0.0, temperature=temperature), forward)
    torch.testing.assert_close(generalized_jsd_loss(s, t, labels, beta=1.0, temperature=temperature), reverse)
    assert not torch.isclose(forward, reverse)  # the test would be vacuous otherwise


def test_symmetric_at_half():
    s, t = _logits(1), _logits(2)
    torch.testing.assert_close(generalized_jsd_loss(s, t, _labels(), beta=0.5),
                               generalized_jsd_loss(t, s, _labels(), beta=0.5))


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_non_negative_per_token(beta):
    per_token = generalized_jsd_loss(_logits(3), _logits(4), beta=beta, reduction="none").sum(-1)
    assert (per_token >= -1e-12).all()


def test_batchmean_divides_by_unmasked_tokens():
    s, t, labels = _logits(1), _logits(2), _labels()
    total = generalized_jsd_loss(s, t, labels, reduction="sum")
    torch.testing.assert_close(generalized_jsd_loss(s, t, labels), total / 16)
    torch.testing.assert_close(generalized_jsd_loss(s, t, labels, num_items_in_batch=40), total / 40)


# --- the fused loss equals the plain one ---------------------------------------------------------


def _fused_case(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s_hidden = torch.randn(B, T, HS, generator=g, dtype=dtype).requires_grad_()
    s_weight = torch.randn(V, HS, generator=g, dtype=dtype).requires_grad_()
    s_bias = torch.randn(V, generator=g, dtype=dtype).requires_grad_()
    t_hidden = torch.randn(B, T, HT, generator=g, dtype=dtype)
    t_weight = torch.randn(V, HT, generator=g, dtype=dtype)
    t_bias = torch.randn(V, generator=g, dtype=dtype)
    return s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias


def _plain_and_fused(case, labels, chunk_size, **kwargs):
    """(loss, (grad h, grad W, grad b)) of the plain loss on full logits and of the fused loss."""
    s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias = case
    params = [s_hidden, s_weight, s_bias]
    plain = generalized_jsd_loss(s_hidden @ s_weight.T + s_bias, t_hidden @ t_weight.T + t_bias,
                                 labels, **kwargs)
    fused = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, labels,
                                       chunk_size=chunk_size, student_bias=s_bias,
                                       teacher_bias=t_bias, **kwargs)
    return (plain, torch.autograd.grad(plain, params)), (fused, torch.autograd.grad(fused, params))


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 16, 100])  # 16 unmasked tokens: divides, not, equal, larger
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 0.3])
def test_fused_equals_plain(beta, temperature, chunk_size):
    (plain, plain_grads), (fused, fused_grads) = _plain_and_fused(
        _fused_case(), _labels(), chunk_size, beta=beta, temperature=temperature)
    torch.testing.assert_close(fused, plain, atol=1e-12, rtol=1e-10)
    for name, a, b in zip(("hidden", "weight", "bias"), fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("kwargs", [
    dict(reduction="sum"),
    dict(num_items_in_batch=37),
    dict(num_items_in_batch=torch.tensor(37)),
    dict(reduction="sum", num_items_in_batch=37),  # num_items_in_batch wins, as in TRL
])
@pytest.mark.parametrize("with_labels", [True, False])
def test_fused_equals_plain_normalisations(kwargs, with_labels):
    labels = _labels() if with_labels else None
    (plain, plain_grads), (fused, fused_grads) = _plain_and_fused(_fused_case(1), labels, 6, **kwargs)
    torch.testing.assert_close(fused, plain, atol=1e-12, rtol=1e-10)
    for a, b in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_fused_without_labels_batchmean_divides_by_batch_like_trl():
    (plain, _), (fused, _) = _plain_and_fused(_fused_case(2), None, 8)
    torch.testing.assert_close(fused, plain)


def test_fused_bf16_close_to_float32():
    case64 = _fused_case(3)
    case16 = [t.detach().to(torch.bfloat16).requires_grad_(t.requires_grad) for t in case64]
    case32 = [t.detach().float().requires_grad_(t.requires_grad) for t in case16]  # same values
    (plain, plain_grads), _ = _plain_and_fused(case32, _labels(), 5, beta=0.5)
    _, (fused, fused_grads) = _plain_and_fused(case16, _labels(), 5, beta=0.5)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, plain, atol=0, rtol=3e-2)
    for a, b, param in zip(fused_grads, plain_grads, case16[:3], strict=True):
        assert a.dtype == param.dtype == torch.bfloat16
        assert (a.float() - b).norm() <= 5e-2 * b.norm()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_fused_gradcheck(beta):
    g = torch.Generator().manual_seed(4)
    h = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    t_h, t_w = torch.randn(2, 3, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    labels = torch.tensor([[-100, 1, 2], [3, 4, -100]])

    def f(h, w, b):
        return fused_generalized_jsd_loss(h, w, t_h, t_w, labels, beta=beta, temperature=1.5,
                                          chunk_size=3, student_bias=b)

    assert torch.autograd.gradcheck(f, (h, w, b))


def test_fused_grad_output_scales_gradients():
    s_hidden, s_weight, s_bias, t_hidden, t_weight, _ = _fused_case(5)
    loss = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, _labels(), chunk_size=4)
    (g1,) = torch.autograd.grad(loss, [s_hidden], retain_graph=True)
    (g3,) = torch.autograd.grad(3 * loss, [s_hidden])
    torch.testing.assert_close(g3, 3 * g1)


def test_fused_teacher_gets_no_gradient_and_no_grad_mode_works():
    s_hidden, s_weight, _, t_hidden, t_weight, _ = _fused_case(6)
    t_weight.requires_grad_()
    loss = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, _labels())
    loss.backward()
    assert t_weight.grad is None and s_weight.grad is not None
    with torch.no_grad():
        again = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, _labels())
    torch.testing.assert_close(again, loss.detach())


def test_all_masked_gives_zero_loss_and_zero_grads():
    case = _fused_case(7)
    labels = torch.full((B, T), -100)
    (plain, plain_grads), (fused, fused_grads) = _plain_and_fused(case, labels, 4)
    assert plain.item() == 0.0 and fused.item() == 0.0
    for g in (*plain_grads, *fused_grads):
        assert torch.isfinite(g).all() and (g == 0).all()


def test_fused_rejects_bad_arguments():
    s_hidden, s_weight, _, t_hidden, t_weight, _ = _fused_case(8)
    with pytest.raises(ValueError, match="vocabularies"):
        fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight[:-1])
    with pytest.raises(ValueError, match="reduction"):
        fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, reduction="none")


# --- memory: no (N, V) tensor is ever built -----------------------------------------------------


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of storages created by tensor ops that are still alive, and the peak.

    RSS on CPU is too noisy for this (glibc keeps freed 32 MB blocks), so we track storages
    directly: each op output's storage is counted once and released when its last tensor dies.
    """

    def __init__(self):
        super().__init__()
        self.live, self.now, self.peak, self.largest = {}, 0, 0, 0

    def _release(self, ptr):
        entry = self.live[ptr]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
            if ptr in self.live:
                self.live[ptr][1] += 1
            else:
                self.live[ptr] = [nbytes, 1]
                self.now += nbytes
                self.peak, self.largest = max(self.peak, self.now), max(self.largest, nbytes)
            weakref.finalize(t, self._release, ptr)
        return out


def _fused_memory(n_tokens, vocab=32000, hidden=64, chunk_size=256):
    g = torch.Generator().manual_seed(0)
    s_hidden = torch.randn(1, n_tokens, hidden, generator=g, requires_grad=True)
    s_weight = (torch.randn(vocab, hidden, generator=g) * 0.1).requires_grad_()
    t_hidden = torch.randn(1, n_tokens, hidden, generator=g)
    t_weight = torch.randn(vocab, hidden, generator=g) * 0.1
    with _LiveTensorBytes() as tracker:
        loss = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, beta=0.5,
                                          chunk_size=chunk_size)
        loss.backward()
    assert torch.isfinite(loss) and s_hidden.grad.shape == s_hidden.shape
    return tracker


def test_fused_memory_is_bounded_by_the_chunk_not_the_tokens():
    n, vocab, chunk = 4096, 32000, 256
    full_logits = n * vocab * 4  # one model's float32 (N, V) logits: 524 MB; the plain loss needs both
    big, small = _fused_memory(n), _fused_memory(1024)
    assert big.largest <= chunk * vocab * 4  # no tensor larger than one chunk of logits
    assert big.peak < 0.4 * 2 * full_logits
    # Peak does not grow with N beyond the (N, H) gradient buffer and the row index.
    assert big.peak - small.peak < 4 * 2**20


# --- the default chunk, by device ------------------------------------------------------------------

def test_the_chunk_rule_is_flat_memory_on_cpu_and_full_matmuls_on_cuda():
    assert [chunk_tokens(v, "cpu") for v in (32000, 128256, 256000, 1 << 20)] == [524, 130, 65, 64]
    assert [chunk_tokens(v, "cuda") for v in (32000, 128256, 256000, 1 << 30)] == [4096, 1024, 512, 128]
    assert chunk_tokens(128256, torch.device("cuda", 3)) == 1024
    assert all(chunk_tokens(v, "cpu") * v <= 1 << 24 for v in (32000, 128256, 256000))
    if not torch.cuda.is_available():
        assert chunk_tokens(128256) == chunk_tokens(128256, "cpu")


def test_a_direct_call_gets_the_device_rule_and_flat_memory():
    """No chunk_size: the chunk of the hidden states' device (here the CPU's 2**24 logits), so
    memory stays flat at a vocabulary where a fixed 1,024-token chunk would hold 4x more."""
    n, vocab, hidden = 2048, 32000, 16
    g = torch.Generator().manual_seed(0)
    s_hidden = torch.randn(1, n, hidden, generator=g, requires_grad=True)
    s_weight = (torch.randn(vocab, hidden, generator=g) * 0.1).requires_grad_()
    t_hidden, t_weight = torch.randn(1, n, hidden, generator=g), torch.randn(vocab, hidden, generator=g) * 0.1
    with _LiveTensorBytes() as tracker:
        loss = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, beta=0.5)
        loss.backward()
    assert tracker.largest <= (1 << 24) * 4 < 1024 * vocab * 4   # no buffer beyond one CPU chunk
    assert tracker.peak < 8 * (1 << 24) * 4
    explicit = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, beta=0.5,
                                          chunk_size=chunk_tokens(vocab, "cpu"))
    assert torch.equal(loss, explicit)


def test_the_default_chunking_equals_the_plain_loss(beta=0.5):
    """Three default chunks (2**24 / 2**18 = 64 tokens: 64, 64, 12 labelled rows) against the plain
    loss on full logits, in value and gradients."""
    n, vocab, hidden = 150, 1 << 18, 8
    g = torch.Generator().manual_seed(1)
    s_hidden = torch.randn(1, n, hidden, generator=g, requires_grad=True)
    s_weight = (torch.randn(vocab, hidden, generator=g) * 0.3).requires_grad_()
    t_hidden, t_weight = torch.randn(1, n, hidden, generator=g), torch.randn(vocab, hidden, generator=g) * 0.3
    labels = torch.randint(0, vocab, (1, n), generator=g)
    labels[0, :10] = -100
    assert chunk_tokens(vocab, "cpu") == 64
    fused = fused_generalized_jsd_loss(s_hidden, s_weight, t_hidden, t_weight, labels, beta=beta)
    fused_grads = torch.autograd.grad(fused, [s_hidden, s_weight])
    plain = generalized_jsd_loss(s_hidden @ s_weight.T, t_hidden @ t_weight.T, labels, beta=beta)
    plain_grads = torch.autograd.grad(plain, [s_hidden, s_weight])
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-7)
    for a, b in zip(fused_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)


# --- top-k teacher (teacher cache) ----------------------------------------------------------------

def _flat(seed):
    return _logits(seed).reshape(-1, V)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 1.0])
def test_topk_loss_is_exact_when_k_is_the_vocabulary(beta):
    s, t = _flat(0), _flat(1)
    lp, ids, tail = teacher_topk(t.double(), V)
    assert torch.all(tail <= -1e4)  # no mass left over
    exact = generalized_jsd_loss(s, t, beta=beta, reduction="sum")
    got = topk_generalized_jsd_loss(s, lp.double(), ids, tail.double(), beta=beta)
    torch.testing.assert_close(got, exact, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", [1, 4, 12])
def test_topk_loss_is_zero_for_the_teacher_itself_and_a_lower_bound_otherwise(k):
    s, t = _flat(0), _flat(1)
    lp, ids, tail = teacher_topk(t, k)
    same = topk_generalized_jsd_loss(t, lp.double(), ids, tail.double())
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    exact = generalized_jsd_loss(s, t, reduction="sum")
    got = topk_generalized_jsd_loss(s, lp.double(), ids, tail.double())
    assert 0 < float(got) <= float(exact) + 1e-9  # coarse-graining never increases the divergence


def test_topk_loss_approaches_exact_as_k_grows():
    s, t = _flat(0), _flat(1) * 3  # a peaked teacher, like a trained one
    exact = float(generalized_jsd_loss(s, t, reduction="sum"))
    gaps = [exact - float(topk_generalized_jsd_loss(s, *teacher_topk(t, k))) for k in (1, 3, 6, 13)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_fused_topk_equals_plain_topk_in_value_and_gradients(chunk_size):
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(B, T, HS, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, HS, generator=g, dtype=torch.float64, requires_grad=True)
    labels = _labels()
    mask = labels != -100
    lp, ids, tail = teacher_topk(_flat(1)[mask.reshape(-1)], 4)
    fused = fused_topk_generalized_jsd_loss(hidden, weight, lp, ids, tail, labels,
                                            chunk_size=chunk_size, num_items_in_batch=20)
    fused.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    plain = topk_generalized_jsd_loss(hidden[mask] @ weight.T, lp, ids, tail) / 20
    plain.backward()
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(grads, (hidden.grad, weight.grad))
    with pytest.raises(ValueError, match="cached teacher rows"):
        fused_topk_generalized_jsd_loss(hidden, weight, lp[:-1], ids[:-1], tail[:-1], labels)
