"""TRL's GKD trainer with these fixes: exact loss normalisation, fast reproducible on-policy
sampling, and a loss that never builds (batch, tokens, vocabulary) logits.

Semantics stay TRL's (`trl.experimental.gkd`): with probability lambda a batch is replaced by the
student's own samples (on-policy), otherwise the dataset's responses are used; the loss is the
token-level generalized JSD(beta) between teacher and student on the response tokens. What
changes:
- The on-policy draw is made once per optimizer step, for all its accumulation micro-batches,
  and the samples are generated *before* the global token count is taken, so the loss is divided
  by the number of tokens actually trained on (TRL counts the dataset's tokens, then swaps in
  samples of another length).
- Sampling (`kdtools.onpolicy`) runs with the KV cache on even when gradient checkpointing is on
  (TRL turns the cache off then; checkpointing is already suspended while generating, so the cache
  is safe), draws each token by inverse CDF on the GPU from a generator of each micro-batch's own,
  seeded from (world seed, optimizer step, global micro-batch index) -- the same samples on 1 or N
  ranks, and after a resume -- and on CUDA uses a static KV cache that transformers compiles.
  `onpolicy_seconds` adds up the time spent sampling.
- With `fused_loss`, the student's and teacher's last hidden states go through
  `kdtools.losses.fused_generalized_jsd_loss` chunk by chunk (`chunk_tokens`: by device), so
  memory does not grow with the vocabulary. Under DeepSpeed ZeRO-3 the lm_head weights are
  sharded, so the plain loss is used.
- A resumed run continues exactly: the on-policy coin's state and counters are saved with every
  checkpoint, and the RNG states are restored *before* the first resumed step samples (transformers
  restores them only after fetching that step's batches).
- With a `teacher_cache` (`kdtools.teachercache`, off by default), an off-policy batch whose rows
  are all cached skips the teacher's forward pass and uses the cached top-k log-probabilities
  (`kdtools.losses.fused_topk_generalized_jsd_loss`); on-policy batches still run the teacher.
  `teacher_forwards` and `teacher_cache_hits` count micro-batches of each kind.
- On CUDA with liger-kernel installed (`pip install .[gpu]`), the fused loss may run as liger's
  Triton `LigerFusedLinearJSD`, rescaled to the same global-token normalisation: where
  `cuda_loss_impl` says it is measured faster and accurate on that GPU (`MEASURED_LOSSES`). Its
  inputs are cast to the lm_head weights' dtype (accelerate's bf16 wrapper returns the student's
  hidden states in float32). On CPU the pure-PyTorch chunked loss runs.
"""

from __future__ import annotations

import copy
import importlib.util
import random
import time
from pathlib import Path

import torch
from trl.experimental.gkd import GKDTrainer
from trl.models.utils import unwrap_model_for_generation

from kdtools import manifest
from kdtools.losses import chunk_tokens
from kdtools.onpolicy import InverseCdfSampler, OnPolicySampler, global_index, micro_batch_seed

__all__ = ["KdGKDTrainer", "InverseCdfSampler", "chunk_tokens", "cuda_loss_impl", "liger_available",
           "liger_jsd_loss"]

POLICY_FILE = "kdtools_policy.json"
# Keys an off-policy batch gets from the teacher cache (the order of TeacherCache.lookup's result).
CACHED = ("teacher_topk_logprobs", "teacher_topk_ids", "teacher_topk_tail")


def liger_available() -> bool:
    """liger-kernel's fused JSD needs Triton on a CUDA device."""
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


# Which fused loss runs by default on a GPU: the faster of those whose bf16 gradients are within
# GRAD_TOLERANCE (relative, Frobenius) of float64. Per GPU model (a substring of
# torch.cuda.get_device_name(), lower case): (ms per forward + backward, worst gradient error) at
# H 4096, V 128256, 8,192 tokens, bf16. Source: /work/shared/gpu-check/README.md, one H200,
# 2026-11-30 (torch 2.11+cu130, liger 0.8.5): liger 103 ms, gradients 3e-3..7e-3; kdtools' fused
# loss 110 ms at 1,024 tokens per chunk (its CUDA chunk, losses.chunk_tokens), gradients ~1e-2.
# A GPU without a row runs kdtools' own loss: liger only where it was measured better. `make
# bench-gpu` prints the row of the GPU it runs on.
GRAD_TOLERANCE = 1e-2
MEASURED_LOSSES = {
    "h200": {"liger": (103.0, 7e-3), "fused": (110.0, 1e-2)},
}


def cuda_loss_impl(device_name: str, liger_installed: bool, measured: dict = MEASURED_LOSSES) -> str:
    """'liger' or 'fused' for a GPU called `device_name`: the fastest measured implementation
    whose gradient error is at most GRAD_TOLERANCE, among those installed; 'fused' (kdtools'
    own, always installed) where nothing qualifies or the GPU was never measured."""
    name = device_name.lower()
    rows = next((impls for key, impls in measured.items() if key in name), {})
    ok = [(ms, impl) for impl, (ms, err) in rows.items()
          if err <= GRAD_TOLERANCE and (impl != "liger" or liger_installed)]
    return min(ok)[1] if ok else "fused"


def liger_jsd_loss(student_hidden, student_weight, teacher_hidden, teacher_weight, labels, beta,
                   num_items_in_batch=None):
    """`kdtools.losses.fused_generalized_jsd_loss` through liger-kernel (GPU). Same shapes and
    beta convention; liger divides by this call's unmasked tokens, so the result is rescaled to
    sum / num_items_in_batch (the global token count) when that is given.

    liger multiplies each side's hidden states by its lm_head weights as they are, so both must
    share a dtype; with bf16 weights under accelerate's bf16 autocast the student's hidden states
    arrive in float32 (accelerate converts a wrapped model's outputs) and the teacher's in bf16:
    each side is cast to its own weights' dtype (autograd casts the gradient back)."""
    from liger_kernel.transformers import LigerFusedLinearJSD

    flat = labels.reshape(-1).contiguous()
    student = student_hidden.reshape(-1, student_hidden.shape[-1]).to(student_weight.dtype).contiguous()
    teacher = teacher_hidden.reshape(-1, teacher_hidden.shape[-1]).to(teacher_weight.dtype).contiguous()
    loss = LigerFusedLinearJSD(jsd_beta=beta)(student, student_weight, teacher, teacher_weight, flat)
    if num_items_in_batch is None:
        return loss
    return loss * (flat != -100).sum() / num_items_in_batch


class _SamplingStudent:
    """The student as `GKDTrainer.generate_on_policy_outputs` sees it: `generate` through the
    on-policy sampler with this micro-batch's seed (TRL's post-processing of the samples is kept
    as it is)."""

    def __init__(self, model, sampler: OnPolicySampler, seed: int):
        self.model, self.sampler, self.seed = model, sampler, seed

    def generate(self, generation_config, **kwargs):
        return self.sampler.generate(self.model, generation_config, self.seed, **kwargs)


class KdGKDTrainer(GKDTrainer):
    def __init__(self, *args, fused_loss: bool = True, policy_seed: int = 0, teacher_cache=None,
                 static_sampling: bool | None = None, **kwargs):
        """`static_sampling`: the on-policy sampler's static, compiled KV cache; None = on CUDA
        without ZeRO-3 (`OnPolicySampler.for_device`)."""
        super().__init__(*args, **kwargs)
        self.teacher_cache = teacher_cache
        self.teacher_forwards = 0
        self.teacher_cache_hits = 0
        self.fused_loss = fused_loss and not self.is_deepspeed_enabled
        self.liger = self.fused_loss and liger_available() and cuda_loss_impl(
            torch.cuda.get_device_name(self.args.device), liger_installed=True) == "liger"
        self.policy_seed = policy_seed
        longest = (self.args.max_length or 0) + self.args.max_new_tokens
        self.sampler = OnPolicySampler.for_device(self.args.device, sharded=self.is_deepspeed_enabled,
                                                  max_cache_len=longest, temperature=self.temperature)
        if static_sampling is not None:
            self.sampler.static = static_sampling
        self.onpolicy_seconds = 0.0
        self.generation_config.use_cache = True
        self.generation_kwargs["use_cache"] = True
        # Greedy over the sampler's output = a sample (see InverseCdfSampler); nothing else warps.
        self.sampling_config = copy.deepcopy(self.generation_config)
        self.sampling_config.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        self.policy_rng = random.Random(policy_seed)
        self.onpolicy_steps = 0
        self.offpolicy_steps = 0
        self.resume_from = None      # the checkpoint this train() resumes from
        self.rng_restored = None     # ... once its RNG states are loaded (once per resume)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        self.resume_from = resume_from_checkpoint
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        if self.args.should_save:
            version, internal, gauss = self.policy_rng.getstate()
            manifest.atomic_write_json(Path(output_dir) / POLICY_FILE, {
                "policy_rng": [version, list(internal), gauss],
                "onpolicy_steps": self.onpolicy_steps, "offpolicy_steps": self.offpolicy_steps,
                "onpolicy_seconds": self.onpolicy_seconds})

    def _load_rng_state(self, checkpoint):
        if checkpoint is None or checkpoint == self.rng_restored:
            return
        super()._load_rng_state(checkpoint)
        saved = manifest.read_json(Path(checkpoint) / POLICY_FILE)
        if saved:
            version, internal, gauss = saved["policy_rng"]
            self.policy_rng.setstate((version, tuple(internal), gauss))
            self.onpolicy_steps, self.offpolicy_steps = saved["onpolicy_steps"], saved["offpolicy_steps"]
            self.onpolicy_seconds = saved.get("onpolicy_seconds", 0.0)
        self.rng_restored = checkpoint

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Fetch one optimizer step's micro-batches; with probability lambda replace them all by
        student samples; then count the tokens the loss will be normalised by."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches:
            return batches, num_items
        self._load_rng_state(self.resume_from)  # a no-op unless this is the first resumed step
        if self.policy_rng.random() < self.lmbda:
            self.sample_on_policy(batches, self.state.global_step, self.accelerator.num_processes,
                                  self.accelerator.process_index)
            num_items = self._get_num_items_in_batch(batches, device)
            self.onpolicy_steps += 1
        else:
            self.offpolicy_steps += 1
            for batch in batches if self.teacher_cache is not None else ():
                found = self.teacher_cache.lookup(batch["input_ids"], batch["attention_mask"], batch["labels"])
                if found is not None:
                    batch.update(zip(CACHED, found, strict=True))
        return batches, num_items

    def sample_on_policy(self, batches, step: int, world_size: int, rank: int) -> None:
        """Replace each micro-batch of optimizer step `step` by the student's samples, in place.
        Micro-batch i of rank `rank` samples from its own generator, seeded from (policy_seed,
        step, i * world_size + rank): the samples depend on the global batch, not on how many
        ranks share it. Adds the time it takes (the GPU's included) to `onpolicy_seconds`."""
        started = time.perf_counter()
        with unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, generation_kwargs=self.generation_kwargs,
            gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
        ) as student:
            for i, batch in enumerate(batches):
                seed = micro_batch_seed(self.policy_seed, step, global_index(i, world_size, rank))
                ids, mask, labels = self.generate_on_policy_outputs(
                    _SamplingStudent(student, self.sampler, seed), batch, self.sampling_config)
                batch["input_ids"], batch["attention_mask"], batch["labels"] = ids, mask, labels
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.onpolicy_seconds += time.perf_counter() - started

    def training_step(self, model, inputs, num_items_in_batch=None):
        # The on-policy swap already happened in get_batch_samples: skip GKDTrainer's own
        # per-micro-batch coin flip and run the plain training step.
        return super(GKDTrainer, self).training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The distillation loss, scaled as transformers' Trainer scales its own: each rank divides
        its token sum by the GLOBAL token count, and DDP then averages the ranks' gradients, so
        the loss is multiplied by the number of ranks (TRL's GKDTrainer omits this, which divides
        every multi-GPU gradient by the number of GPUs)."""
        loss, outputs = self.distill_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    def distill_loss(self, model, inputs, num_items_in_batch=None):
        """-> (loss, student outputs) for one micro-batch, normalised by `num_items_in_batch`."""
        if CACHED[0] in inputs:
            return self.cached_teacher_loss(model, inputs, num_items_in_batch)
        self.teacher_forwards += 1
        if not self.fused_loss:
            return super().compute_loss(model, inputs, True, num_items_in_batch)
        from kdtools.losses import fused_generalized_jsd_loss

        # logits_to_keep=1: the model computes logits for the last position only (unused).
        student_out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            output_hidden_states=True, logits_to_keep=1)
        teacher = self.accelerator.unwrap_model(self.teacher_model)
        teacher.eval()
        with torch.no_grad():
            teacher_hidden = teacher.get_decoder()(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).last_hidden_state
        student = self.accelerator.unwrap_model(model)
        weight = student.get_output_embeddings().weight
        if self.liger:
            loss = liger_jsd_loss(student_out.hidden_states[-1][:, :-1], weight, teacher_hidden[:, :-1],
                                  teacher.get_output_embeddings().weight, inputs["labels"][:, 1:], self.beta,
                                  num_items_in_batch)
            return loss, student_out
        loss = fused_generalized_jsd_loss(
            student_out.hidden_states[-1][:, :-1],
            weight,
            teacher_hidden[:, :-1],
            teacher.get_output_embeddings().weight,
            labels=inputs["labels"][:, 1:],
            beta=self.beta,
            chunk_size=chunk_tokens(weight.shape[0], weight.device),
            num_items_in_batch=num_items_in_batch,
        )
        return loss, student_out

    def cached_teacher_loss(self, model, inputs, num_items_in_batch=None):
        """The off-policy loss against the cached top-k teacher: no teacher forward pass."""
        from kdtools.losses import fused_topk_generalized_jsd_loss

        student_out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            output_hidden_states=True, logits_to_keep=1)
        weight = self.accelerator.unwrap_model(model).get_output_embeddings().weight
        loss = fused_topk_generalized_jsd_loss(
            student_out.hidden_states[-1][:, :-1], weight, *(inputs[name] for name in CACHED),
            labels=inputs["labels"][:, 1:], beta=self.beta, chunk_size=chunk_tokens(weight.shape[0], weight.device),
            num_items_in_batch=num_items_in_batch,
        )
        self.teacher_cache_hits += 1
        return loss, student_out

    def log(self, logs, *args, **kwargs):
        steps = self.onpolicy_steps + self.offpolicy_steps
        if steps and "loss" in logs:
            logs["onpolicy_fraction"] = round(self.onpolicy_steps / steps, 4)
        super().log(logs, *args, **kwargs)
