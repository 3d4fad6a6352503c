"""`kdtools sft`: supervised fine-tuning on the assistant tokens, with TRL's SFTTrainer.

    kdtools sft --model 3b --data 40k                      # Llama-3.2-3B on 40,000 Tulu 3 rows
    kdtools sft --model 70b --data 40k                     # the same-data teacher T_s
    kdtools --world toy sft --model 1b --data 10k          # the toy 1b, for real, on a CPU
    kdtools --world toy sft --model 1b --task translation --data full   # from its general SFT

Setup -> train -> save. Training happens in a hidden `.partial` sibling of the output folder;
the model, tokenizer and finally `run.json` are written there, and the folder is renamed into
place only when complete, so a crash never leaves something that looks finished.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console

from kdtools import manifest, paths, tasks, tracking
from kdtools.data import subset_path
from kdtools.errors import KdError
from kdtools.world import TrainDefaults, World

console = Console(stderr=True, soft_wrap=True)
GENERAL = "general"


@dataclass(frozen=True)
class SftJob:
    world: World
    model: str                 # alias or path as given; names the output folder
    weights: str               # where training starts: hub id or model folder
    init: str                  # 'base', 'sft' or the init folder
    data: str                  # size label
    task: str                  # 'general' or a domain task
    data_file: Path
    out: Path
    train: TrainDefaults
    force: bool = False

    def config(self) -> dict:
        """Everything that determines the result (and nothing that does not, like --force)."""
        return {
            "world": self.world.name, "model": self.model, "weights": self.weights,
            "init": self.init, "data": self.data, "task": self.task,
            "data_file": str(self.data_file), "data_sha256": manifest.file_sha256(self.data_file),
            "chat_template": self.world.chat_template, "seed": self.world.seed,
            "train": asdict(self.train),
        }


def resolve_init(world: World, model: str, task: str, init: str | None) -> tuple[str, str, str]:
    """-> (weights to start from, init name for the manifest, variant for the output folder)."""
    default = "base" if task == GENERAL else "sft"
    init = init or default
    variant = "" if init == default else f"init-{paths.model_name(init)}"
    if init == "base":
        return world.resolve_model(model), "base", variant
    if init == "sft":
        folder = paths.model_dir(world.results, world.name, model, "sft", GENERAL, "full")
        if manifest.read_manifest(folder) is None:
            raise KdError(
                f"init 'sft' needs the general SFT of {model} on full data ({folder}): run "
                f"`kdtools --world {world.name} sft --model {model} --data full` first, or pass --init base"
            )
        return str(folder), "sft", variant
    folder = Path(init)
    if not (folder / "config.json").is_file():
        raise KdError(f"--init {init}: not 'base', 'sft' or a model folder with a config.json")
    return str(folder), str(folder), variant


def make_job(world: World, model: str, data: str, task: str = GENERAL, init: str | None = None,
             out: Path | None = None, max_steps: int | None = None, epochs: float | None = None,
             learning_rate: float | None = None, force: bool = False) -> SftJob:
    """All checks that need no model: alias, size, data file, init, overrides, output folder."""
    world.resolve_model(model)
    world.size_rows(data)
    if task != GENERAL:
        tasks.check_task(task)
    dataset = world.data.name if task == GENERAL else task
    hint = f"data --task {task}" if task != GENERAL else "data"
    data_file = subset_path(world, data, dataset, hint)
    weights, init_name, variant = resolve_init(world, model, task, init)
    train = world.train
    for key, value in (("max_steps", max_steps), ("epochs", epochs), ("learning_rate", learning_rate)):
        if value is not None:
            if value <= 0:
                raise KdError(f"--{key.replace('_', '-')} must be positive, got {value}")
            train = replace(train, **{key: value})
    gpus = int(os.environ.get("WORLD_SIZE", "1"))
    if train.effective_batch_size % (train.per_device_batch_size * gpus):
        raise KdError(
            f"effective batch {train.effective_batch_size} is not divisible by per-device batch "
            f"{train.per_device_batch_size} x {gpus} GPUs: change train.per_device_batch_size"
        )
    out = Path(out) if out else paths.model_dir(world.results, world.name, model, "sft", task, data, variant)
    _check_writable(out)
    return SftJob(world, model, weights, init_name, data, task, data_file, out, train, force)


def _check_writable(out: Path) -> None:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise KdError(f"cannot write to {parent} ({exc.strerror}): pick another --out or fix permissions") from None


def _already_done(job: SftJob) -> bool:
    done = manifest.read_manifest(job.out)
    if done is None:
        return False
    if done.get("config_hash") == manifest.config_hash(job.config()):
        console.print(f"[green]up to date:[/] {job.out} (delete it or pass --force to retrain)")
        return not job.force
    if not job.force:
        raise KdError(
            f"{job.out} holds a finished run with a different config: pass --force to replace it "
            "or --out to write elsewhere"
        )
    return False


def training_arguments(job: SftJob, output_dir: Path, report_to: str):
    """The paper's Appendix A.2 as TRL's SFTConfig; the loss is summed over accumulation steps
    and divided by the global count of assistant tokens (transformers' num_items_in_batch)."""
    import torch
    from trl import SFTConfig

    t = job.train
    cuda = torch.cuda.is_available()
    gpus = int(os.environ.get("WORLD_SIZE", "1"))
    return SFTConfig(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.effective_batch_size // (t.per_device_batch_size * gpus),
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,          # a float < 1 is a ratio of the total steps
        weight_decay=t.weight_decay,
        optim="adamw_torch",
        bf16=t.bf16 and cuda and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=t.gradient_checkpointing,
        max_length=t.max_length,
        assistant_only_loss=True,
        packing=False,
        average_tokens_across_devices=True,
        include_num_input_tokens_seen="non_padding",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="no",
        report_to=report_to,
        run_name=str(job.out),
        seed=job.world.seed,
        data_seed=job.world.seed,
        use_cpu=not cuda,
        dataloader_num_workers=0,
    )


def loss_summary(log_history: list[dict]) -> dict:
    curve = [(e["step"], round(e["loss"], 5)) for e in log_history if "loss" in e]
    losses = [loss for _, loss in curve]
    k = max(1, len(losses) // 5)
    return {
        "loss_curve": curve,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_first_fifth_mean": sum(losses[:k]) / k if losses else None,
        "loss_last_fifth_mean": sum(losses[-k:]) / k if losses else None,
    }


def run(job: SftJob) -> dict | None:
    if _already_done(job):
        return manifest.read_manifest(job.out)
    started = time.time()
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from kdtools.chat import prepare_tokenizer

    partial = job.out.parent / f".{job.out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    console.print(f"[bold]sft[/] {job.model} ({job.weights}) on {job.data_file} -> {job.out}")
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(job.weights), job.world.chat_template)
    dtype = torch.bfloat16 if job.train.bf16 and torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(job.weights, dtype=dtype)
    train_set = datasets.Dataset.from_json(str(job.data_file)).select_columns(["messages"])

    dims = {"student": job.model, "method": "sft", "size": job.data, "task": job.task,
            "init": job.init, "teacher": None}
    wandb_on = tracking.start_run(job.world, "sft", dims, job.config(), job.out)
    trainer = SFTTrainer(
        model=model,
        args=training_arguments(job, partial / "trainer", "wandb" if wandb_on else "none"),
        train_dataset=train_set,
        processing_class=tokenizer,
    )
    result = trainer.train()
    trainer.save_model(str(partial))
    metrics = {
        **loss_summary(trainer.state.log_history),
        "steps": trainer.state.global_step,
        "train_loss_mean": round(result.training_loss, 5),
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "rows": len(train_set),
        # TRL drops conversations whose prompt alone fills max_length (no assistant token left)
        "rows_dropped_too_long": len(train_set) - len(trainer.train_dataset),
    }
    if not trainer.is_world_process_zero():
        return None
    tokenizer.save_pretrained(str(partial))
    shutil.rmtree(partial / "trainer", ignore_errors=True)
    if wandb_on:
        tracking.finish_run({k: v for k, v in metrics.items() if k != "loss_curve"})
    payload = manifest.write_manifest(partial, "sft", job.config(), started, metrics=metrics,
                                      dims=dims)
    if job.out.exists():
        shutil.rmtree(job.out)
    os.replace(partial, job.out)
    console.print(
        f"[green]done[/] in {payload['wall_time_s']:.0f}s: loss {metrics['loss_first']} -> "
        f"{metrics['loss_last']} over {metrics['steps']} steps -> {job.out}"
    )
    return payload
