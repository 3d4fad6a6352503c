"""The cost model behind `kdtools plan`: pure functions from model shapes, token counts and a
device's throughput to FLOPs, seconds, bytes of GPU memory and bytes of disk.

    from kdtools.costmodel import ARCHS, train_flops_per_token
    train_flops_per_token(ARCHS["meta-llama/Llama-3.1-8B"], context=512, recompute=True)

Nothing here reads a file or imports torch: `kdtools.workload` measures the token counts and
picks the stage, this module only does arithmetic, so every number can be checked by hand
(tests/test_costmodel.py does). The formulas are in the README ("Planning cost").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from kdtools.errors import KdError

GB = 1e9


@dataclass(frozen=True)
class Arch:
    """A decoder-only (Llama) transformer's shape: what its FLOPs, memory and bytes depend on."""

    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool                     # input embedding shared with the output head

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def block_params(self) -> int:
        """Weights of one layer's matrices: q and o (h x h), k and v (h x kv), gate/up/down (3 h x ffn)."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        return 2 * h * h + 2 * h * kv + 3 * h * self.ffn

    @property
    def params(self) -> int:
        """All parameters: blocks, two RMSNorm vectors per layer, the final norm, embeddings."""
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * (self.block_params + 2 * self.hidden) + self.hidden + embeddings

    @property
    def matmul_params(self) -> int:
        """N of the 2N-FLOPs-per-token rule: the weights a token is multiplied by (blocks and the
        output head; the input embedding is a lookup, norms are negligible)."""
        return self.layers * self.block_params + self.vocab * self.hidden

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV cache of one token: keys and values of every layer."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


# The paper world's models (config.json of each hub repository; Llama 3 herd, Meta 2024).
_LLAMA_1B = Arch(layers=16, hidden=2048, ffn=8192, heads=32, kv_heads=8, vocab=128256, tied=True)
_LLAMA_3B = Arch(layers=28, hidden=3072, ffn=8192, heads=24, kv_heads=8, vocab=128256, tied=True)
_LLAMA_8B = Arch(layers=32, hidden=4096, ffn=14336, heads=32, kv_heads=8, vocab=128256, tied=False)
_LLAMA_70B = Arch(layers=80, hidden=8192, ffn=28672, heads=64, kv_heads=8, vocab=128256, tied=False)
ARCHS = {
    "meta-llama/Llama-3.2-1B": _LLAMA_1B,
    "meta-llama/Llama-3.2-1B-Instruct": _LLAMA_1B,
    "meta-llama/Llama-3.2-3B": _LLAMA_3B,
    "meta-llama/Llama-3.2-3B-Instruct": _LLAMA_3B,
    "meta-llama/Llama-3.1-8B": _LLAMA_8B,
    "meta-llama/Llama-3.1-8B-Instruct": _LLAMA_8B,
    "meta-llama/Llama-3.1-70B": _LLAMA_70B,
    "meta-llama/Llama-3.1-70B-Instruct": _LLAMA_70B,
    "meta-llama/Llama-3.3-70B-Instruct": _LLAMA_70B,
}


def arch_from_config(config: dict) -> Arch:
    """An Arch from a Hugging Face Llama config.json."""
    heads = config["num_attention_heads"]
    return Arch(
        layers=config["num_hidden_layers"], hidden=config["hidden_size"],
        ffn=config["intermediate_size"], heads=heads,
        kv_heads=config.get("num_key_value_heads") or heads, vocab=config["vocab_size"],
        tied=bool(config.get("tie_word_embeddings", False)),
    )


# ---------------------------------------------------------------------------------------------
# Devices. Peak dense BF16 tensor FLOP/s, HBM capacity and bandwidth are NVIDIA's datasheet
# numbers for the SXM parts; the utilisations are what a well-tuned job reaches (README
# "Planning cost" gives the sources). A calibration file replaces the products with rates
# measured on the user's own cluster (kdtools plan --calibrate).
# GKD's on-policy sampler (kdtools.onpolicy: HF generate with a KV cache) does not decode at the
# HBM rate: its steps are bound by kernel launches and Python, which grow with the layers. Per
# layer, from one H200 (/work/shared/gpu-check/README.md, 2026-11-30, torch 2.11+cu130,
# transformers 5.24; Llama-3.2-1B shape, 16 layers, bf16, batch 8, 896-token prompts, 128 sampled
# tokens), where the weights stream in 0.7 ms a step:
#   dynamic KV cache: kdtools' on-policy step took 2.07 s against 0.33 s off-policy, so sampling
#     128 tokens took 1.74 s = 13.6 ms a step (model.generate alone: 13.4 ms, decode.py);
#   static KV cache compiled by transformers (what the sampler runs on CUDA without ZeRO-3):
#     3.6 ms a step for model.generate (decode.py; the shipped sampler's own rate is not measured
#     on a GPU yet: `kdtools plan --calibrate` there times it, and `make bench-gpu` shows it).
# Launch overhead barely depends on the GPU, so the same floors serve the H100 and A100.
SAMPLER_LAYER_S = {"static": 3.6e-3 / 16, "dynamic": 13.6e-3 / 16}


@dataclass(frozen=True)
class Device:
    name: str
    peak_flops: float              # dense BF16 (fp32 for the CPU), per device
    memory_bytes: float            # HBM (or the RAM budget for the CPU)
    bandwidth: float               # HBM bytes/s
    train_mfu: float = 0.40        # Llama 3 pretraining on H100: 38-43% BF16 MFU
    forward_mfu: float = 0.50      # forward only (teacher logits, prefill): no backward overheads
    bandwidth_util: float = 0.60   # decode reads weights + KV at ~60% of peak HBM bandwidth
    startup_s: float = 180.0       # job start: imports, NCCL/DeepSpeed init (model loading is separate)
    load_bytes_per_s: float = 2e9  # reading safetensors from a parallel filesystem
    sampler_layer_s: dict | None = None  # on-policy decode floor per layer, by cache ('static'/'dynamic')
    nvlink_bytes_per_s: float = 450e9    # one direction per GPU within a node (NVLink 4: 900 GB/s both)
    network_bytes_per_s: float = 50e9    # per GPU between nodes (one 400 Gb/s NDR adapter per GPU)


DEVICES = {
    "h100": Device("h100", peak_flops=989e12, memory_bytes=80 * GB, bandwidth=3.35e12,
                   sampler_layer_s=SAMPLER_LAYER_S),
    "h200": Device("h200", peak_flops=989e12, memory_bytes=141 * GB, bandwidth=4.8e12,
                   sampler_layer_s=SAMPLER_LAYER_S),
    "a100": Device("a100", peak_flops=312e12, memory_bytes=80 * GB, bandwidth=2.039e12,
                   sampler_layer_s=SAMPLER_LAYER_S, nvlink_bytes_per_s=300e9, network_bytes_per_s=25e9),
    # The toy worlds' machine: two laptop cores in fp32, compute bound (no launch floor). Rough;
    # calibrate for real numbers.
    "cpu": Device("cpu", peak_flops=50e9, memory_bytes=8 * GB, bandwidth=10e9, train_mfu=0.1,
                  forward_mfu=0.1, bandwidth_util=0.5, startup_s=8.0, load_bytes_per_s=5e8,
                  nvlink_bytes_per_s=10e9, network_bytes_per_s=1e9),
}


def device(name: str) -> Device:
    if name not in DEVICES:
        raise KdError(f"unknown --gpu '{name}': use one of {', '.join(DEVICES)}")
    return DEVICES[name]


@dataclass(frozen=True)
class Rates:
    """Achieved rates of one model on one device: what every time formula divides by."""

    train_flops: float             # FLOP/s of a training step (forward + backward [+ recompute])
    forward_flops: float           # FLOP/s of a forward pass (teacher, prefill)
    bandwidth: float               # bytes/s a decode step reads weights and KV cache at
    decode_step_s: float = 0.0     # measured floor of one decode step (kernel launches, Python)
    startup_s: float = 0.0
    load_bytes_per_s: float = 2e9
    sampler_layer_s: dict | None = None  # on-policy sampler's decode floor per layer, by cache kind
    sampler_step_s: dict | None = None   # ... or its step measured on this model, by cache kind (calibrated)


def nominal_rates(dev: Device) -> Rates:
    """Datasheet peak x documented utilisation; the on-policy sampler's measured per-layer floor."""
    return Rates(dev.peak_flops * dev.train_mfu, dev.peak_flops * dev.forward_mfu,
                 dev.bandwidth * dev.bandwidth_util, 0.0, dev.startup_s, dev.load_bytes_per_s,
                 dev.sampler_layer_s)


# ---------------------------------------------------------------------------------------------
# FLOPs (Kaplan et al. 2020; Chinchilla appendix): a forward pass costs 2N per token plus
# attention 4 * layers * hidden * context (QK^T and AV over the tokens attended to); backward
# costs twice the forward; activation checkpointing recomputes the forward once more.
def forward_flops_per_token(arch: Arch, context: float) -> float:
    """FLOPs of one token's forward pass attending to `context` earlier tokens (mean)."""
    return 2 * arch.matmul_params + 4 * arch.layers * arch.hidden * context


def train_flops_per_token(arch: Arch, context: float, recompute: bool) -> float:
    """Forward + backward (2x forward) [+ the recomputed forward with gradient checkpointing]."""
    return (4 if recompute else 3) * forward_flops_per_token(arch, context)


def train_seconds(tokens: float, arch: Arch, seq_len: float, rates: Rates, gpus: int,
                  recompute: bool) -> float:
    """Wall seconds to train on `tokens` tokens of sequences of mean length seq_len (causal:
    a token attends to seq_len/2 tokens on average), data parallel over `gpus`."""
    return tokens * train_flops_per_token(arch, seq_len / 2, recompute) / (rates.train_flops * gpus)


def forward_seconds(tokens: float, arch: Arch, seq_len: float, rates: Rates, gpus: int) -> float:
    return tokens * forward_flops_per_token(arch, seq_len / 2) / (rates.forward_flops * gpus)


def generate_seconds(sequences: float, prompt: float, new: float, arch: Arch, rates: Rates,
                     batch: int, shards: int = 1, dtype_bytes: int = 2) -> float:
    """Wall seconds to generate `new` tokens after a `prompt` for each of `sequences`, `batch`
    sequences at a time, the weights split over `shards` devices (tensor parallel).

    Prefill is compute bound (a forward pass over the prompts). Decode is memory bound: each
    step reads every weight once (shared by the batch) and each sequence's KV cache, so
        step = max(floor, (weight bytes + batch x KV bytes) / (shards x bandwidth),
                   batch x 2N / (shards x forward FLOP/s)).
    """
    if sequences <= 0 or new <= 0:
        return 0.0
    prefill = sequences * prompt * forward_flops_per_token(arch, prompt / 2) / (rates.forward_flops * shards)
    batch = max(1, min(batch, math.ceil(sequences)))
    kv = batch * (prompt + new / 2) * arch.kv_bytes_per_token(dtype_bytes)
    memory = (arch.params * dtype_bytes + kv) / (shards * rates.bandwidth)
    compute = batch * forward_flops_per_token(arch, prompt + new / 2) / (shards * rates.forward_flops)
    step = max(rates.decode_step_s, memory, compute)
    return prefill + math.ceil(sequences / batch) * new * step


def sampler_floor(arch: Arch, rates: Rates, static: bool) -> float:
    """Seconds of one decode step of GKD's on-policy sampler at least: calibrated for this model,
    else layers x the measured per-layer floor of its KV cache kind (static on CUDA without
    ZeRO-3, dynamic under ZeRO-3; SAMPLER_LAYER_S)."""
    kind = "static" if static else "dynamic"
    measured = (rates.sampler_step_s or {}).get(kind)
    if measured:
        return measured
    return arch.layers * (rates.sampler_layer_s or {}).get(kind, 0.0)


def onpolicy_seconds(sequences: float, prompt: float, new: float, arch: Arch, rates: Rates, batch: int,
                     static: bool, dtype_bytes: int = 2) -> float:
    """Wall seconds of GKD's on-policy sampling on one device: `generate_seconds` with the
    sampler's step floor (`sampler_floor`) in place of the HBM-bound decode step where larger."""
    floor = max(rates.decode_step_s, sampler_floor(arch, rates, static))
    return generate_seconds(sequences, prompt, new, arch, replace(rates, decode_step_s=floor), batch, 1,
                            dtype_bytes)


def gather_seconds(arch: Arch, dev: Device, gpus: int, gpus_per_node: int, dtype_bytes: int = 2) -> float:
    """One all-gather of a ZeRO-3-sharded model's weights (what the on-policy sampler does once per
    on-policy optimizer step, not per decode step): each GPU receives the (g-1)/g it lacks, over
    NVLink within a node, over the network when the job spans nodes."""
    if gpus <= 1:
        return 0.0
    link = dev.nvlink_bytes_per_s if gpus <= gpus_per_node else dev.network_bytes_per_s
    return arch.params * dtype_bytes * (gpus - 1) / gpus / link


def load_seconds(arch: Arch, rates: Rates, dtype_bytes: int = 2) -> float:
    """Job start plus reading one model's weights."""
    return rates.startup_s + arch.params * dtype_bytes / rates.load_bytes_per_s


# ---------------------------------------------------------------------------------------------
# Memory per GPU (Rajbhandari et al. 2020, ZeRO): mixed-precision Adam keeps 2 (bf16 weights)
# + 2 (grads) + 12 (fp32 master, m, v) = 16 bytes per parameter (fp32 training: 4+4+8, also 16).
# ZeRO-1 shards the 12 optimizer bytes, ZeRO-2 also the gradients, ZeRO-3 everything.
STATE_BYTES = 16
FRAMEWORK_BYTES = 3 * GB           # CUDA context, NCCL and all-gather buffers, fragmentation
FIT_FRACTION = 0.9                 # plan to use at most 90% of a device's memory


def state_bytes(params: int, zero: int, gpus: int) -> float:
    """Weights + gradients + Adam states per GPU under ZeRO stage `zero` over `gpus` GPUs."""
    n = params
    if gpus <= 1 or zero == 0:
        return STATE_BYTES * n
    if zero == 1:
        return 4 * n + 12 * n / gpus
    if zero == 2:
        return 2 * n + 14 * n / gpus
    if zero == 3:
        return STATE_BYTES * n / gpus
    raise KdError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero}")


def activation_bytes(arch: Arch, seq_len: int, batch: int, recompute: bool, dtype_bytes: int = 2) -> float:
    """Activations kept for the backward pass (Korthikanti et al. 2022, ~34 s h bytes per layer
    with flash attention); with checkpointing only each layer's input plus one layer's worth."""
    per_layer = 34 * seq_len * arch.hidden * dtype_bytes / 2  # the 34 s h count is in bf16 bytes
    if recompute:
        return batch * (arch.layers * seq_len * arch.hidden * dtype_bytes + per_layer)
    return batch * arch.layers * per_layer


def logits_bytes(arch: Arch, tokens: int) -> float:
    """fp32 logits and their gradient for `tokens` positions."""
    return 2 * tokens * arch.vocab * 4


@dataclass(frozen=True)
class Memory:
    states: float
    activations: float
    logits: float
    teacher: float
    kv_cache: float

    @property
    def peak(self) -> float:
        return self.states + self.activations + self.logits + self.teacher + self.kv_cache + FRAMEWORK_BYTES


def train_memory(arch: Arch, seq_len: int, batch: int, zero: int, gpus: int, recompute: bool,
                 teacher: Arch | None = None, logit_chunk: int | None = None,
                 generate_tokens: int = 0, dtype_bytes: int = 2) -> Memory:
    """Peak bytes per GPU of a training step. A KD teacher is frozen: bf16 weights only, sharded
    like the student under ZeRO-3; `logit_chunk` = the fused loss's chunk of positions (None:
    full-sequence logits); on-policy generation adds the student's KV cache."""
    shard = gpus if (zero == 3 and gpus > 1) else 1
    positions = min(seq_len, logit_chunk) if logit_chunk else seq_len
    heads = 2 if teacher is not None else 1            # student and teacher logits
    return Memory(
        states=state_bytes(arch.params, zero, gpus),
        activations=activation_bytes(arch, seq_len, batch, recompute, dtype_bytes),
        logits=heads * logits_bytes(arch, batch * positions),
        teacher=(teacher.params * dtype_bytes / shard
                 + activation_bytes(teacher, seq_len, batch, True, dtype_bytes) / teacher.layers)
        if teacher is not None else 0.0,
        kv_cache=batch * generate_tokens * arch.kv_bytes_per_token(dtype_bytes),
    )


def inference_memory(arch: Arch, shards: int, batch: int, tokens: int, dtype_bytes: int = 2) -> Memory:
    """Per GPU of a tensor-parallel generation: a shard of the weights and of the batch's KV cache."""
    return Memory(states=arch.params * dtype_bytes / shards, activations=0.0, logits=0.0, teacher=0.0,
                  kv_cache=batch * tokens * arch.kv_bytes_per_token(dtype_bytes) / shards)


def fits(memory: Memory, dev: Device) -> bool:
    return memory.peak <= FIT_FRACTION * dev.memory_bytes


# ---------------------------------------------------------------------------------------------
# Disk.
BYTES_PER_TEXT_TOKEN = 5.0         # JSONL: ~4 characters of UTF-8 text per Llama 3 token + JSON


def checkpoint_bytes(arch: Arch, dtype_bytes: int = 2) -> float:
    """A saved model: safetensors of every parameter (bf16: 2 bytes)."""
    return arch.params * dtype_bytes


def text_bytes(tokens: float) -> float:
    return tokens * BYTES_PER_TEXT_TOKEN


TOPK_ENTRY_BYTES = 6               # a token id (int32) and its log-prob (bf16)


def teacher_cache_bytes(tokens: float, k: int) -> float:
    """The optional teacher top-k cache: k (id, log-prob) pairs per cached token."""
    return tokens * k * TOPK_ENTRY_BYTES
