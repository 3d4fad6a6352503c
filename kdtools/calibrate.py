"""`kdtools plan --calibrate`: time a few real steps of every stage's kernels on this machine and
write the rates the cost model divides by, so estimates follow the user's own hardware.

    kdtools --world smoke plan --calibrate                 # -> results/smoke/plan/calibration.json
    kdtools plan all_tables --calibration calibration.json # estimates from the measured rates

For each model of the world that fits on the device: a training step (forward, backward, AdamW)
at the world's per-device batch and max length -> achieved train FLOP/s; a forward pass ->
forward FLOP/s (teacher scoring, prefill); a greedy decode of DECODE_TOKENS tokens -> seconds
per decode step and the bandwidth it implies; GKD's own on-policy sampler (kdtools.onpolicy) at the
per-device batch -> seconds per sampled step, the rate `plan` prices on-policy sampling at. Plus the job start (importing the training
stack in a fresh process) and the load rate of the weights. FLOPs come from
kdtools.costmodel, so a calibrated estimate is the same formula with measured denominators.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kdtools import costmodel as cm
from kdtools.errors import KdError
from kdtools.manifest import atomic_write_json
from kdtools.world import World

STEPS = 3                          # timed steps per measurement (after one warm-up)
DECODE_TOKENS = 24                 # greedy tokens of the decode measurement
PROMPT_TOKENS = 16
RATE_KEYS = ("train_flops", "forward_flops", "bandwidth")


def default_path(world: World) -> Path:
    return world.results / world.name / "plan" / "calibration.json"


def load_calibration(path: str | Path) -> dict:
    """A calibration file, checked: one line naming the problem (KdError) if it is unusable."""
    path = Path(path)
    fix = "write one with `kdtools plan --calibrate` or fix the path"
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise KdError(f"cannot read calibration file {path} ({exc.strerror}): {fix}") from None
    except json.JSONDecodeError as exc:
        raise KdError(f"calibration file {path} is not valid JSON (line {exc.lineno}): {fix}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise KdError(f"calibration file {path} has no 'models' rates: {fix}")
    for alias, rates in models.items():
        bad = [k for k in RATE_KEYS if not isinstance(rates.get(k), (int, float)) or rates[k] <= 0]
        if bad:
            raise KdError(f"calibration file {path}: model '{alias}' lacks a positive {bad[0]}: {fix}")
    return data


def _startup_seconds(world: World, models: dict) -> tuple[float, str]:
    """What a job pays besides its steps: a real one-step `kdtools sft` of the smallest model on
    the smallest subset (imports, data, trainer, saving; its run.json wall time less the step),
    or, where the data is not here, importing the training stack in a fresh interpreter."""
    import shutil

    from kdtools.paths import subset_file

    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "WANDB_MODE": "disabled"}
    alias = min(models, key=lambda a: models[a]["params"])
    size = min((s for s in world.data.sizes if world.data.sizes[s]), key=world.data.sizes.get, default=None)
    if size and subset_file(world.results, world.name, world.data.name, size).is_file():
        out = default_path(world).parent / ".calibrate-sft"
        cmd = [sys.executable, "-m", "kdtools.cli", "--world", str(world.file), "--results", str(world.results),
               "sft", "--model", alias, "--data", size, "--max-steps", "1", "--out", str(out), "--force"]
        subprocess.run(cmd, capture_output=True, text=True, env=env)
        try:
            wall = json.loads((out / "run.json").read_text())["wall_time_s"]
            return max(0.0, wall - models[alias]["measured"]["train_step_s"]), "one-step kdtools sft"
        except (OSError, KeyError, json.JSONDecodeError):
            pass  # no manifest: the run failed; fall back to timing the imports
        finally:
            shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformers, datasets, trl"], check=True,
                   capture_output=True, env=env)
    return time.perf_counter() - t, "imports"


def _timed(fn, steps: int) -> float:
    """Mean seconds of `fn` over `steps` calls, after one warm-up call."""
    import torch

    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def measure_model(world: World, alias: str, steps: int = STEPS) -> dict:
    """Rates of one model: train and forward FLOP/s, decode step seconds and implied bandwidth."""
    import torch
    from transformers import AutoModelForCausalLM

    from kdtools.workload import arch_of, dtype_bytes

    arch = arch_of(world, alias)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if (world.train.bf16 and cuda) else torch.float32
    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(world.resolve_model(alias), dtype=dtype)
    load_s = time.perf_counter() - t
    device = "cuda" if cuda else "cpu"
    model.to(device)
    if world.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    batch, seq = world.train.per_device_batch_size, world.train.max_length
    seq = min(seq, getattr(model.config, "max_position_embeddings", seq))
    gen = torch.Generator().manual_seed(world.seed)
    ids = torch.randint(2, arch.vocab, (batch, seq), generator=gen).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def train_step():
        model.train()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)

    def forward():
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)

    prompt = ids[:1, :PROMPT_TOKENS]

    def decode():
        model.eval()
        with torch.no_grad():
            model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=DECODE_TOKENS,
                           min_new_tokens=DECODE_TOKENS, do_sample=False, pad_token_id=0)

    tokens = batch * seq
    train_s = _timed(train_step, steps)
    forward_s = _timed(forward, steps)
    decode_s = _timed(decode, max(1, steps // 2))
    # the batch's prefill: a forward pass over PROMPT_TOKENS of each row
    onpolicy = onpolicy_step_seconds(model, ids[:, :PROMPT_TOKENS], forward_s * PROMPT_TOKENS / seq,
                                     max(1, steps // 2))
    prefill_s = cm.forward_flops_per_token(arch, PROMPT_TOKENS / 2) * PROMPT_TOKENS / (
        tokens * cm.forward_flops_per_token(arch, seq / 2) / forward_s)
    step_s = max(1e-6, (decode_s - prefill_s) / DECODE_TOKENS)
    kv = (PROMPT_TOKENS + DECODE_TOKENS / 2) * arch.kv_bytes_per_token(dtype_bytes(world))
    recompute = world.train.gradient_checkpointing
    return {
        "train_flops": tokens * cm.train_flops_per_token(arch, seq / 2, recompute) / train_s,
        "forward_flops": tokens * cm.forward_flops_per_token(arch, seq / 2) / forward_s,
        "bandwidth": (arch.params * dtype_bytes(world) + kv) / step_s,
        "decode_step_s": step_s,
        "onpolicy_step_s": onpolicy,
        "load_s": load_s,
        "params": arch.params,
        "measured": {"train_step_s": train_s, "forward_s": forward_s, "decode_s": decode_s,
                     "batch": batch, "seq_len": seq, "decode_tokens": DECODE_TOKENS},
    }


def onpolicy_step_seconds(model, prompts, prefill_s: float, steps: int) -> dict:
    """Seconds per decode step of GKD's own on-policy sampler (kdtools.onpolicy.OnPolicySampler,
    what KdGKDTrainer runs) on `prompts` (the trainer's per-device batch): DECODE_TOKENS sampled
    tokens (EOS held off), less the prefill. By KV cache kind: on CUDA 'static' (compiled, the
    first call compiles and is not timed) and 'dynamic' (what runs under ZeRO-3); on a CPU
    'dynamic', the only one the trainer uses there."""
    import torch
    from transformers import GenerationConfig

    from kdtools.onpolicy import OnPolicySampler

    config = GenerationConfig(max_new_tokens=DECODE_TOKENS, min_new_tokens=DECODE_TOKENS, do_sample=False,
                              use_cache=True, pad_token_id=0,
                              eos_token_id=model.generation_config.eos_token_id or model.config.eos_token_id)
    mask = torch.ones_like(prompts)
    kinds = ("static", "dynamic") if prompts.device.type == "cuda" else ("dynamic",)
    out = {}
    model.eval()
    for kind in kinds:
        sampler = OnPolicySampler(static=kind == "static", max_cache_len=prompts.shape[1] + DECODE_TOKENS)
        with torch.no_grad():
            seconds = _timed(lambda s=sampler: s.generate(model, config, 0, input_ids=prompts, attention_mask=mask),
                             steps)
        if sampler.fell_back is None:  # a static cache that failed here would fail in training too
            out[kind] = max(1e-6, (seconds - prefill_s) / DECODE_TOKENS)
    return out


def calibrate(world: World, out: Path | None = None, steps: int = STEPS) -> tuple[Path, dict]:
    """Measure every model of the world that fits here; write and return the calibration file."""
    import torch

    from kdtools.workload import arch_of

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    memory = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
    models, skipped = {}, {}
    first = next(iter(world.models))
    with contextlib.suppress(OSError):  # warm torch up: first-call costs would land on one model
        measure_model(world, first, 1)
    for alias in world.models:
        arch = arch_of(world, alias)
        if memory and arch.params * cm.STATE_BYTES > cm.FIT_FRACTION * memory:
            skipped[alias] = "does not fit one device for a training step"
            continue
        try:
            models[alias] = measure_model(world, alias, steps)
        except OSError as exc:  # a hub model that is not on this machine
            skipped[alias] = f"not loadable here ({str(exc).splitlines()[0][:120]})"
    if not models:
        raise KdError(f"no model of world '{world.name}' could be measured here ({skipped}): build the toy "
                      "world (`kdtools toy`) or run --calibrate where the models are")
    load_bytes = sum(m["params"] for m in models.values()) * (2 if world.train.bf16 else 4)
    startup, how = _startup_seconds(world, models)
    payload = {
        "world": world.name, "device": device, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "startup_s": startup, "startup_from": how,
        "load_bytes_per_s": load_bytes / max(1e-6, sum(m["load_s"] for m in models.values())),
        "models": models, "skipped": skipped,
    }
    out = Path(out) if out else default_path(world)
    atomic_write_json(out, payload)
    return out, payload
