"""TRL's GKD trainer with three fixes: exact loss normalisation, a KV cache while sampling, and a
loss that never builds (batch, tokens, vocabulary) logits.

Semantics stay TRL's (`trl.experimental.gkd`): with probability lambda a batch is replaced by the
student's own samples (on-policy), otherwise the dataset's responses are used; the loss is the
token-level generalized JSD(beta) between teacher and student on the response tokens. What
changes:
- The on-policy draw is made once per optimizer step, for all its accumulation micro-batches,
  and the samples are generated *before* the global token count is taken, so the loss is divided
  by the number of tokens actually trained on (TRL counts the dataset's tokens, then swaps in
  samples of another length).
- Sampling runs with the KV cache on even when gradient checkpointing is on (TRL turns the cache
  off then; checkpointing is already suspended while generating, so the cache is safe).
- With `fused_loss`, the student's and teacher's last hidden states go through
  `kdtools.losses.fused_generalized_jsd_loss` chunk by chunk, so memory does not grow with the
  vocabulary. Under DeepSpeed ZeRO-3 the lm_head weights are sharded, so the plain loss is used.
- A resumed run continues exactly: the on-policy coin's state and counters are saved with every
  checkpoint, and the RNG states are restored *before* the first resumed step samples (transformers
  restores them only after fetching that step's batches).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from trl.experimental.gkd import GKDTrainer
from trl.models.utils import unwrap_model_for_generation

from kdtools import manifest

POLICY_FILE = "kdtools_policy.json"


class KdGKDTrainer(GKDTrainer):
    def __init__(self, *args, fused_loss: bool = True, policy_seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.fused_loss = fused_loss and not self.is_deepspeed_enabled
        self.generation_config.use_cache = True
        self.generation_kwargs["use_cache"] = True
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
                "onpolicy_steps": self.onpolicy_steps, "offpolicy_steps": self.offpolicy_steps})

    def _load_rng_state(self, checkpoint):
        if checkpoint is None or checkpoint == self.rng_restored:
            return
        super()._load_rng_state(checkpoint)
        saved = manifest.read_json(Path(checkpoint) / POLICY_FILE)
        if saved:
            version, internal, gauss = saved["policy_rng"]
            self.policy_rng.setstate((version, tuple(internal), gauss))
            self.onpolicy_steps, self.offpolicy_steps = saved["onpolicy_steps"], saved["offpolicy_steps"]
        self.rng_restored = checkpoint

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """Fetch one optimizer step's micro-batches; with probability lambda replace them all by
        student samples; then count the tokens the loss will be normalised by."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if not batches:
            return batches, num_items
        self._load_rng_state(self.resume_from)  # a no-op unless this is the first resumed step
        if self.policy_rng.random() < self.lmbda:
            with unwrap_model_for_generation(
                self.model_wrapped, self.accelerator, generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as student:
                for batch in batches:
                    ids, mask, labels = self.generate_on_policy_outputs(student, batch, self.generation_config)
                    batch["input_ids"], batch["attention_mask"], batch["labels"] = ids, mask, labels
            num_items = self._get_num_items_in_batch(batches, device)
            self.onpolicy_steps += 1
        else:
            self.offpolicy_steps += 1
        return batches, num_items

    def training_step(self, model, inputs, num_items_in_batch=None):
        # The on-policy swap already happened in get_batch_samples: skip GKDTrainer's own
        # per-micro-batch coin flip and run the plain training step.
        return super(GKDTrainer, self).training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.fused_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
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
        # ~2**26 float32 logits per chunk and model (256 MB): 512 tokens at Llama 3's 128k vocabulary
        chunk = max(64, (1 << 26) // weight.shape[0])
        loss = fused_generalized_jsd_loss(
            student_out.hidden_states[-1][:, :-1],
            weight,
            teacher_hidden[:, :-1],
            teacher.get_output_embeddings().weight,
            labels=inputs["labels"][:, 1:],
            beta=self.beta,
            chunk_size=chunk,
            num_items_in_batch=num_items_in_batch,
        )
        return (loss, student_out) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        steps = self.onpolicy_steps + self.offpolicy_steps
        if steps and "loss" in logs:
            logs["onpolicy_fraction"] = round(self.onpolicy_steps / steps, 4)
        super().log(logs, *args, **kwargs)
