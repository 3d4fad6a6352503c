"""`kdtools sft`: supervised fine-tuning on the assistant tokens, with TRL's SFTTrainer.

    kdtools sft --model 3b --data 40k                      # Llama-3.2-3B on 40,000 Tulu 3 rows
    kdtools sft --model 70b --data 40k                     # the same-data teacher T_s
    kdtools sft --model 1b --data 10k --world toy          # the toy 1b, for real, on a CPU
    kdtools sft --model 1b --task translation --data full --world toy   # from its general SFT

Setup -> train -> save. Training happens in a hidden `.partial` sibling of the output folder;
the model, tokenizer and finally `run.json` are written there, and the folder is renamed into
place only when complete, so a crash never leaves something that looks finished.
`train(job)` is also what SeqKD calls on the teacher's samples (method 'seqkd').
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from kdtools import manifest, paths, staging, tasks, trainargs, tracking
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
    method: str = "sft"        # 'seqkd' when training on teacher samples
    extra: tuple = ()          # further (key, value) dimensions, e.g. (('teacher', '70b'),)

    def config(self) -> dict:
        """Everything that determines the result (and nothing that does not, like --force)."""
        return {
            "world": self.world.name, "method": self.method, "model": self.model,
            "weights": self.weights, "init": self.init, "data": self.data, "task": self.task,
            "data_file": str(self.data_file), "data_sha256": manifest.file_sha256(self.data_file),
            "chat_template": self.world.chat_template, "seed": self.world.seed,
            "train": trainargs.hashed(self.train), **dict(self.extra),
        }

    def dims(self) -> dict:
        dims = {"student": self.model, "method": self.method, "size": self.data, "task": self.task,
                "init": self.init, "teacher": None}
        return {**dims, **{k: v for k, v in self.extra if k in ("teacher", "samples")}}


def resolve_init(world: World, model: str, task: str, init: str | None) -> tuple[str, str, str]:
    """-> (weights to start from, init name for the manifest, variant for the output folder)."""
    default = "base" if task == GENERAL else "sft"
    init = init or default
    variant = "" if init == default else f"init-{paths.model_name(init)}"
    if init == "base":
        return world.resolve_model(model), "base", variant
    if init == "sft":
        return str(finished_sft(world, model, GENERAL, world.grid.full)), "sft", variant
    folder = Path(init)
    if not (folder / "config.json").is_file():
        raise KdError(f"--init {init}: not 'base', 'sft' or a model folder with a config.json")
    return str(folder), str(folder), variant


def finished_sft(world: World, model: str, task: str, size: str) -> Path:
    """The folder of a finished SFT run, or a KdError naming the command that makes it."""
    folder = paths.model_dir(world.results, world.name, model, "sft", task, size)
    if manifest.read_manifest(folder) is None:
        task_arg = "" if task == GENERAL else f" --task {task}"
        raise KdError(
            f"needs the SFT of {model} on {task} {size} ({folder}): run "
            f"`kdtools --world {world.name} sft --model {model}{task_arg} --data {size}` first"
        )
    return folder


def override_train(train: TrainDefaults, **overrides) -> TrainDefaults:
    """Apply positive CLI overrides (max_steps, epochs, learning_rate) to the world's defaults."""
    for key, value in overrides.items():
        if value is not None:
            if value <= 0:
                raise KdError(f"--{key.replace('_', '-')} must be positive, got {value}")
            train = replace(train, **{key: value})
    if problem := trainargs.check_batch(train):
        raise KdError(problem)
    return train


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
    train = override_train(world.train, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate)
    out = Path(out) if out else paths.model_dir(world.results, world.name, model, "sft", task, data, variant)
    staging.check_writable(out)
    return SftJob(world, model, weights, init_name, data, task, data_file, out, train, force)


def run(job: SftJob) -> dict | None:
    with staging.claim(job.out, job.config, job.force) as partial:
        return manifest.read_manifest(job.out) if partial is None else train(job, partial)


def train(job: SftJob, partial: Path) -> dict | None:
    """Fine-tune on job.data_file in the staging folder `partial` (staging.claim) and publish
    job.out; returns the manifest on the main process, None on the others."""
    started = time.time()
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from kdtools import checkpoint
    from kdtools.chat import prepare_tokenizer

    console.print(f"[bold]{job.method}[/] {job.model} ({job.weights}) on {job.data_file} -> {job.out}")
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(job.weights), job.world.chat_template)
    train_set = datasets.Dataset.from_json(str(job.data_file)).select_columns(["messages"])
    wandb_on = tracking.start_run(job.world, job.method, job.dims(), job.config(), job.out)
    # The config comes first: under DeepSpeed ZeRO-3 it makes from_pretrained shard while loading.
    args = SFTConfig(
        **trainargs.trainer_kwargs(job.train, partial / "trainer", "wandb" if wandb_on else "none",
                                   job.world.seed, str(job.out)),
        assistant_only_loss=True,
        packing=False,
    )
    model = AutoModelForCausalLM.from_pretrained(job.weights, dtype=trainargs.torch_dtype(job.train))
    guard = checkpoint.Guard()
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
                         callbacks=[guard])
    checkpoint.train(trainer, guard, partial / "trainer")
    checkpoint.save_model(trainer, partial)
    metrics = {
        **trainargs.loss_summary(trainer.state.log_history),
        "steps": trainer.state.global_step,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "rows": len(train_set),
        # TRL drops conversations whose prompt alone fills max_length (no assistant token left)
        "rows_dropped_too_long": len(train_set) - len(trainer.train_dataset),
    }
    if not trainer.is_world_process_zero():
        return None
    payload = staging.finish(partial, job.out, tokenizer, job.method, job.config(), started,
                             metrics, job.dims(), wandb_on)
    console.print(
        f"[green]done[/] in {payload['wall_time_s']:.0f}s: loss {metrics['loss_first']} -> "
        f"{metrics['loss_last']} over {metrics['steps']} steps -> {job.out}"
    )
    return payload
