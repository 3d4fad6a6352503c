"""Token-level generalized Jensen-Shannon divergence for distillation, plain and fused.

Two pure functions:
- `generalized_jsd_loss(student_logits, teacher_logits, ...)`: the loss of TRL's GKD trainer
  (`trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`), re-implemented here and tested equal to
  it, so that everything else in kdtools can use it without importing TRL.
- `fused_generalized_jsd_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, ...)`:
  the same loss computed from the last hidden states and the lm_head weights, `chunk_size` tokens
  at a time, so (batch, tokens, vocabulary) logits never exist; its gradient is computed in the
  same pass (the Liger-kernel pattern), so the backward pass stores nothing of size V per token.

Definition (GKD, Agarwal et al. 2023, eq. 1, https://huggingface.co/papers/2306.13649), per token,
with P_s = softmax(z_s / T), P_t = softmax(z_t / T) over the vocabulary and M = (1-beta) P_s + beta P_t:

    beta = 0:       KL(P_t || P_s)                                  ("forward KL")
    beta = 1:       KL(P_s || P_t)                                  ("reverse KL")
    0 < beta < 1:   beta KL(P_t || M) + (1 - beta) KL(P_s || M)

The endpoints are special cases, as in TRL (the mixture formula itself tends to 0 at both ends).
No T**2 factor is applied (TRL applies none either).

Run the tests with: `.venv/bin/python -m pytest tests/test_losses.py`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

# Logits per chunk of the fused losses, by device (see `chunk_tokens`).
CPU_CHUNK_LOGITS = 1 << 24         # 64 MB of float32 per (chunk, V) buffer
CUDA_CHUNK_LOGITS = 1 << 27        # 512 MB: ~1,024 tokens at Llama 3's 128k vocabulary
CUDA_CHUNK_MULTIPLE = 128          # whole tensor-core tiles of rows


def chunk_tokens(vocab: int, device=None) -> int:
    """Tokens per chunk of `fused_generalized_jsd_loss` (and the top-k loss) on `device`
    (a torch.device or its name; None: CUDA when available, else the CPU).

    CPU: ~2**24 float32 logits per chunk (~6 such (chunk, V) buffers live at once), i.e. 512 tokens
    at a 32k vocabulary and 130 at 128k: the loss's memory stays flat in the vocabulary and the
    tokens (1 GB at 2,048 tokens x 128k x H 256, where a fixed 1,024 tokens peaks at 3.1 GB).
    CUDA: ~2**27 logits, rounded down to a multiple of 128 rows: 1,024 tokens at 128k, 4,096 at 32k.
    At H 4096, V 128256, 8,192 bf16 tokens one H200 measured 110 ms / 9.3 GB at 1,024 tokens
    against 267 ms / 3.3 GB at the CPU rule's 130: small chunks leave the GPU's matmuls too thin
    to fill it (/work/shared/gpu-check/README.md, 2026-11-30).
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda":
        return max(CUDA_CHUNK_MULTIPLE, CUDA_CHUNK_LOGITS // vocab // CUDA_CHUNK_MULTIPLE * CUDA_CHUNK_MULTIPLE)
    return max(64, CPU_CHUNK_LOGITS // vocab)


def generalized_jsd_loss(student_logits, teacher_logits, labels=None, beta=0.5, temperature=1.0,
                         reduction="batchmean", num_items_in_batch=None):
    """Generalized JSD between teacher and student, numerically equal to TRL's GKD loss.

    Shapes: `student_logits`, `teacher_logits` (B, T, V), already shifted so that position t
    predicts `labels[:, t]`; `labels` (B, T) or None. Both logits are divided by `temperature`.
    KL direction: beta=0 is KL(teacher || student), beta=1 is KL(student || teacher), between them
    the generalized JSD with mixture M = (1-beta) P_student + beta P_teacher (see module docstring).
    Masking: positions with `labels == -100` are dropped before the reduction.
    Normalisation (the per-element divergence, V terms per token, is first summed):
    - `num_items_in_batch` given (int or tensor): sum / num_items_in_batch, whatever `reduction`
      says; this is the global token count under gradient accumulation.
    - "batchmean": sum / number of unmasked tokens (clamped to >= 1). Without labels TRL divides by
      B, the first dimension (not by B*T); kept for equality with TRL.
    - "sum": sum. "mean": mean over all (token, vocab) elements. "none": the per-element
      divergence, (n_unmasked, V) with labels, (B, T, V) without.
    """
    if reduction not in ("batchmean", "sum", "mean", "none"):
        raise ValueError(f"reduction must be batchmean, sum, mean or none, got {reduction!r}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)

    # F.kl_div(input, target, log_target=True) = exp(target) * (target - input) = KL(target || input).
    if beta == 0:
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=student_log_probs.dtype, device=student_log_probs.device)
        mixture_log_probs = torch.logsumexp(
            torch.stack([student_log_probs + torch.log1p(-b), teacher_log_probs + torch.log(b)]), dim=0)
        kl_teacher = F.kl_div(mixture_log_probs, teacher_log_probs, reduction="none", log_target=True)
        kl_student = F.kl_div(mixture_log_probs, student_log_probs, reduction="none", log_target=True)
        jsd = b * kl_teacher + (1 - b) * kl_student

    if labels is not None:
        mask = labels != IGNORE_INDEX
        jsd = jsd[mask]

    if num_items_in_batch is not None:
        if isinstance(num_items_in_batch, torch.Tensor):
            num_items_in_batch = num_items_in_batch.to(jsd.device)
        return jsd.sum() / num_items_in_batch
    if reduction == "batchmean":
        denom = mask.sum().clamp_min(1) if labels is not None else max(jsd.size(0), 1)
        return jsd.sum() / denom
    if reduction == "sum":
        return jsd.sum()
    if reduction == "mean":
        return jsd.mean()
    return jsd


def _jsd_chunk(log_ps, log_pt, beta, need_grad):
    """Per-token generalized JSD of one chunk and its gradient w.r.t. the *scaled* student logits.

    Shapes: `log_ps`, `log_pt` (C, V) log-softmax of logits / T, in the compute dtype (float32 or
    float64). Returns (loss (C,), grad (C, V) or None), grad = d loss_c / d s_c where s = z / T.
    Formulas (P = softmax, KL per token, broadcast over V):
        beta = 0:      grad = P_s - P_t
        beta = 1:      grad = P_s * (log P_s - log P_t - KL(P_s || P_t))
        0 < beta < 1:  grad = (1 - beta) P_s * (log P_s - log M - KL(P_s || M))
    (write L = f(log P_s); then dL/ds = u - P_s sum(u) with u = dL/d log P_s; for the mixture the
    terms in d log M cancel because sum(beta P_t + (1-beta) P_s) / M = 1 elementwise.)
    The caller passes its only references, so each buffer is freed as soon as it is used up:
    peak about 6 (C, V) tensors, for beta in (0, 1).
    """
    grad = None
    if beta == 0:
        pt = log_pt.exp()
        loss = (pt * (log_pt - log_ps)).sum(-1)
        del log_pt
        if need_grad:
            grad = log_ps.exp_().sub_(pt)  # P_s - P_t, in log_ps's buffer
    elif beta == 1:
        log_ratio = log_ps - log_pt
        del log_pt
        ps = log_ps.exp_()
        loss = (ps * log_ratio).sum(-1)
        if need_grad:
            grad = log_ratio.sub_(loss[:, None]).mul_(ps)
    else:
        pt = log_pt.exp()
        log_m = torch.logaddexp(log_ps + math.log1p(-beta), log_pt + math.log(beta))
        kl_teacher = (pt * (log_pt - log_m)).sum(-1)
        del pt, log_pt
        log_ratio = log_m.neg_().add_(log_ps)  # log P_s - log M, in log_m's buffer
        ps = log_ps.exp_()
        kl_student = (ps * log_ratio).sum(-1)
        loss = beta * kl_teacher + (1 - beta) * kl_student
        if need_grad:
            grad = log_ratio.sub_(kl_student[:, None]).mul_(ps).mul_(1 - beta)
    return loss, grad


class _FusedLinearJSD(torch.autograd.Function):
    """Loss and gradients in one chunked pass; backward only rescales the stored gradients."""

    @staticmethod
    def forward(ctx, s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias, labels,
                beta, temperature, chunk_size, denom, need_grad):
        hs, ht = s_hidden.shape[-1], t_hidden.shape[-1]
        s_flat, t_flat = s_hidden.reshape(-1, hs), t_hidden.reshape(-1, ht)
        if labels is None:
            rows = torch.arange(s_flat.shape[0], device=s_flat.device)
        else:
            rows = (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(-1)
        # float64 inputs stay float64 (gradcheck); bf16/fp16/fp32 are computed in float32.
        compute = torch.promote_types(s_hidden.dtype, torch.float32)
        scale = 1.0 / (denom * temperature)  # d(reduced loss)/d(token loss) * d s / d z

        want_h = need_grad and s_hidden.requires_grad
        want_w = need_grad and s_weight.requires_grad
        want_b = need_grad and s_bias is not None and s_bias.requires_grad
        grad_h = torch.zeros_like(s_flat) if want_h else None
        # Accumulated over all chunks, so kept in float32 even for bf16 weights.
        grad_w = torch.zeros(s_weight.shape, dtype=compute, device=s_weight.device) if want_w else None
        grad_b = torch.zeros(s_bias.shape, dtype=compute, device=s_bias.device) if want_b else None
        total = torch.zeros((), dtype=compute, device=s_flat.device)

        for start in range(0, rows.numel(), chunk_size):
            idx = rows[start:start + chunk_size]
            h = s_flat[idx].to(s_weight.dtype)
            t_h = t_flat[idx].to(t_weight.dtype)
            # Built inline so that _jsd_chunk holds the only references and can free them early.
            loss, grad = _jsd_chunk(
                F.log_softmax(F.linear(h, s_weight, s_bias).to(compute) / temperature, dim=-1),
                F.log_softmax(F.linear(t_h, t_weight, t_bias).to(compute) / temperature, dim=-1),
                beta, need_grad)
            total += loss.sum()
            if grad is None:
                continue
            grad.mul_(scale)  # (C, V): gradient of the reduced loss w.r.t. raw student logits
            if want_h:
                grad_h[idx] = (grad.to(s_weight.dtype) @ s_weight).to(grad_h.dtype)
            if want_w:
                grad_w += grad.t().to(h.dtype) @ h
            if want_b:
                grad_b += grad.sum(0)

        ctx.save_for_backward(
            grad_h.view_as(s_hidden) if want_h else None,
            grad_w.to(s_weight.dtype) if want_w else None,
            grad_b.to(s_bias.dtype) if want_b else None,
        )
        return total / denom

    @staticmethod
    def backward(ctx, grad_output):
        grads = []
        for g in ctx.saved_tensors:
            if g is not None and not torch.equal(grad_output, torch.ones_like(grad_output)):
                g = g * grad_output.to(g.dtype)
            grads.append(g)
        grad_h, grad_w, grad_b = grads
        return grad_h, grad_w, grad_b, None, None, None, None, None, None, None, None, None


def fused_generalized_jsd_loss(student_hidden, student_weight, teacher_hidden, teacher_weight,
                               labels=None, beta=0.5, temperature=1.0, chunk_size=None,
                               num_items_in_batch=None, reduction="batchmean",
                               student_bias=None, teacher_bias=None):
    """`generalized_jsd_loss` of the logits `h @ W.T + b`, without ever building (B, T, V) logits.

    Shapes: `student_hidden` (B, T, Hs), `student_weight` (V, Hs), `student_bias` (V,) or None;
    `teacher_hidden` (B, T, Ht), `teacher_weight` (V, Ht), `teacher_bias` (V,) or None; Ht may
    differ from Hs, V must match. Positions are already aligned: position t predicts labels[:, t].
    KL direction, masking (labels == -100) and normalisation are those of `generalized_jsd_loss`:
    sum / num_items_in_batch when given, else "batchmean" = sum / unmasked tokens (clamped to >= 1;
    B without labels, as TRL), or "sum". Returns a float32 scalar (float64 for float64 inputs).

    Method: the N = B*T tokens are flattened, masked ones dropped, and the rest processed
    `chunk_size` at a time: logits = h @ W.T (+ b) in the input dtype, then divided by T and
    upcast to float32 (float64 stays float64). The forward pass also computes, per chunk, the
    gradient of the reduced loss w.r.t. the raw student logits z, with s = z / T (see _jsd_chunk),
        dL/dz = (1 / (T * denom)) * g,   g = P_s - P_t                          (beta = 0)
                                         g = P_s (log P_s - log P_t - KL(P_s||P_t))   (beta = 1)
                                         g = (1-beta) P_s (log P_s - log M - KL(P_s||M))  (else)
    and accumulates dL/dh = G W, dL/dW = G^T h, dL/db = sum G. Only those (N, Hs), (V, Hs) and (V,)
    buffers outlive a chunk, so peak extra memory is about 6 float32 (chunk_size, V) tensors plus
    the gradient buffers, whatever N is (measured: 238 MB at N=4096, V=32000, chunk_size=256).
    `chunk_size` None: `chunk_tokens(V, student_hidden.device)`, flat memory on a CPU, full
    matmuls on a GPU. Teacher tensors get no gradient. Gradients are returned in the inputs' dtypes.
    """
    if reduction not in ("batchmean", "sum"):
        raise ValueError(f"fused loss supports reduction batchmean or sum, got {reduction!r}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    if student_weight.shape[0] != teacher_weight.shape[0]:
        raise ValueError(f"student and teacher vocabularies differ: {student_weight.shape[0]} "
                         f"vs {teacher_weight.shape[0]}")
    if student_hidden.shape[:-1] != teacher_hidden.shape[:-1]:
        raise ValueError(f"student and teacher hidden states cover different positions: "
                         f"{tuple(student_hidden.shape)} vs {tuple(teacher_hidden.shape)}")

    if num_items_in_batch is not None:
        denom = float(num_items_in_batch)
    elif reduction == "sum":
        denom = 1.0
    elif labels is not None:
        denom = float(max(int((labels != IGNORE_INDEX).sum()), 1))
    else:
        denom = float(max(student_hidden.shape[0], 1))

    if chunk_size is None:
        chunk_size = chunk_tokens(student_weight.shape[0], student_hidden.device)
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (student_hidden, student_weight, student_bias))
    return _FusedLinearJSD.apply(
        student_hidden, student_weight, student_bias,
        teacher_hidden.detach(), teacher_weight.detach(),
        None if teacher_bias is None else teacher_bias.detach(),
        labels, float(beta), float(temperature), int(chunk_size), denom, need_grad,
    )


# --- Top-k teacher (the optional teacher cache) --------------------------------------------------
#
# A cached teacher keeps, per response token, only its k most likely tokens' log-probabilities and
# the log of the mass left over (the "tail"). The loss then compares the two distributions
# *coarse-grained* onto those k + 1 outcomes (the k tokens, and "any other token"): the student's
# probabilities of the k cached ids, and its own leftover mass. That coarse-graining is exact when
# k = V (the tail is empty), zero when the student equals the teacher, and never above the exact
# loss (coarse-graining cannot increase an f-divergence; KL and the generalized JSD are ones).

LOG_ZERO = -1e4  # stands for log 0: exp() is exactly 0 in float32, and 0 * (LOG_ZERO - x) is 0, not nan


def teacher_topk(teacher_logits, k, temperature=1.0):
    """The teacher's top-k, as the cache stores it.

    Shapes: `teacher_logits` (N, V) -> (log_probs (N, k) of softmax(z / T), ids (N, k) int64,
    tail (N,) = log of the probability of all other tokens, LOG_ZERO when k = V). Float32
    (float64 stays float64); the cache stores the log-probabilities in float16.
    """
    compute = torch.promote_types(teacher_logits.dtype, torch.float32)
    log_p = F.log_softmax(teacher_logits.to(compute) / temperature, dim=-1)
    top, ids = log_p.topk(k, dim=-1)
    tail = log_p.scatter(-1, ids, float("-inf")).logsumexp(-1).clamp_min(LOG_ZERO)
    return top, ids, tail


def topk_generalized_jsd_loss(student_logits, teacher_log_probs, teacher_ids, teacher_tail,
                              beta=0.5, temperature=1.0, reduction="sum"):
    """Generalized JSD(beta) against a top-k teacher, on the k + 1 outcomes (k ids, the rest).

    Shapes: `student_logits` (N, V), only the positions that carry a label (already shifted and
    masked); `teacher_log_probs` (N, k) log-softmax of the teacher's logits / T at `teacher_ids`
    (N, k); `teacher_tail` (N,) log of the teacher's remaining mass. Any float dtype; computed in
    float32 (float64 stays float64).
    Student side: log P_s = log_softmax(z_s / T) over the full vocabulary, gathered at the k ids,
    and its tail log(1 - sum of those) computed as a logsumexp over the other V - k entries.
    Both (N, k + 1) distributions go through `generalized_jsd_loss` (same beta, KL direction and
    endpoints; the log-probabilities are already normalised, so its log_softmax changes nothing).
    Normalisation: "sum" (the caller divides by its global token count) or "batchmean" (/ N).
    """
    compute = torch.promote_types(student_logits.dtype, torch.float32)
    log_ps = F.log_softmax(student_logits.to(compute) / temperature, dim=-1)
    ids = teacher_ids.long()
    student = torch.cat([log_ps.gather(-1, ids),
                         log_ps.scatter(-1, ids, float("-inf")).logsumexp(-1, keepdim=True)], dim=-1)
    teacher = torch.cat([teacher_log_probs.to(compute), teacher_tail.to(compute)[:, None]], dim=-1)
    return generalized_jsd_loss(student.clamp_min(LOG_ZERO), teacher.clamp_min(LOG_ZERO), beta=beta,
                                reduction=reduction)


def fused_topk_generalized_jsd_loss(student_hidden, student_weight, teacher_log_probs, teacher_ids,
                                    teacher_tail, labels, beta=0.5, temperature=1.0, chunk_size=None,
                                    num_items_in_batch=None, student_bias=None):
    """`topk_generalized_jsd_loss` of the logits `h @ W.T + b`, `chunk_size` tokens at a time.

    Shapes: `student_hidden` (B, T, H) and `labels` (B, T), aligned (position t predicts
    labels[:, t]); the teacher tensors (n, k), (n, k), (n,) hold the n = (labels != -100).sum()
    labelled positions in row-major order (row 0's positions, then row 1's, ...). Each chunk is
    recomputed in the backward pass (activation checkpointing), so no (B, T, V) logits are kept;
    `chunk_size` None: `chunk_tokens(V, device)`. Normalisation: sum / num_items_in_batch when given, else / n (clamped to >= 1).
    """
    from torch.utils.checkpoint import checkpoint

    h = student_hidden.reshape(-1, student_hidden.shape[-1])[labels.reshape(-1) != IGNORE_INDEX]
    if h.shape[0] != teacher_ids.shape[0]:
        raise ValueError(f"{h.shape[0]} labelled positions but {teacher_ids.shape[0]} cached teacher rows")

    def chunk_loss(h_chunk, lp, ids, tail):
        logits = F.linear(h_chunk, student_weight, student_bias)
        return topk_generalized_jsd_loss(logits, lp, ids, tail, beta, temperature, reduction="sum")

    chunk_size = chunk_size or chunk_tokens(student_weight.shape[0], h.device)
    total = h.new_zeros((), dtype=torch.promote_types(h.dtype, torch.float32))
    for start in range(0, h.shape[0], chunk_size):
        part = slice(start, start + chunk_size)
        total = total + checkpoint(chunk_loss, h[part], teacher_log_probs[part], teacher_ids[part],
                                   teacher_tail[part], use_reentrant=False)
    denom = num_items_in_batch if num_items_in_batch is not None else max(h.shape[0], 1)
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    return total / denom
