"""The paper's Appendix A.2 as keyword arguments for TRL's configs (SFTConfig, GKDConfig).

Shared by every training stage so that SFT and KD students differ only in their objective:
AdamW, linear schedule with 3% warmup, effective batch = per-device batch x accumulation x GPUs,
and a loss summed over accumulation steps then divided by the global count of trained tokens
(transformers' num_items_in_batch).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from kdtools.ranks import world_size as gpu_count  # ranks (processes) that share the batch
from kdtools.world import TrainDefaults


def trainer_kwargs(train: TrainDefaults, output_dir: Path, report_to: str, seed: int, run_name: str) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=train.effective_batch_size // (train.per_device_batch_size * gpu_count()),
        learning_rate=train.learning_rate,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,          # a float < 1 is a ratio of the total steps
        weight_decay=train.weight_decay,
        optim="adamw_torch",
        bf16=train.bf16 and cuda and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=train.gradient_checkpointing,
        max_length=train.max_length,
        average_tokens_across_devices=True,
        include_num_input_tokens_seen="non_padding",
        logging_steps=train.logging_steps,
        logging_first_step=True,
        # Checkpoints for preemption (kdtools.checkpoint): every save_steps, and on a signal;
        # only the newest is kept. NaN/inf losses are logged as they are, so they stop the run.
        save_strategy="steps" if train.save_steps else "no",
        save_steps=train.save_steps or 500,
        save_total_limit=1,
        logging_nan_inf_filter=False,
        report_to=report_to,
        run_name=run_name,
        seed=seed,
        data_seed=seed,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        # DeepSpeed ZeRO-3 for the workflow's GPU ranks (kdtools.launch exports the packaged
        # config); `accelerate launch --config_file ...zero3.yaml` configures it by itself.
        deepspeed=os.environ.get("KDTOOLS_DEEPSPEED") or None,
    )


def hashed(train: TrainDefaults) -> dict:
    """The training settings that determine the result: all but how often to checkpoint (so a
    run resumed under another save_steps, or an older finished run, keeps its config hash)."""
    return {k: v for k, v in asdict(train).items() if k != "save_steps"}


def torch_dtype(train: TrainDefaults):
    import torch

    return torch.bfloat16 if train.bf16 and torch.cuda.is_available() else torch.float32


def loss_summary(log_history: list[dict], key: str = "loss") -> dict:
    """The loss curve from a Trainer's log history, with first/last fifths for a quick verdict."""
    curve = [(e["step"], round(e[key], 5)) for e in log_history if key in e]
    losses = [loss for _, loss in curve]
    k = max(1, len(losses) // 5)
    return {
        "loss_curve": curve,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_first_fifth_mean": sum(losses[:k]) / k if losses else None,
        "loss_last_fifth_mean": sum(losses[-k:]) / k if losses else None,
    }


def check_batch(train: TrainDefaults) -> str | None:
    """A problem with the batch arithmetic, or None."""
    if train.effective_batch_size % (train.per_device_batch_size * gpu_count()):
        return (f"effective batch {train.effective_batch_size} is not divisible by per-device batch "
                f"{train.per_device_batch_size} x {gpu_count()} GPUs: change train.per_device_batch_size")
    return None
