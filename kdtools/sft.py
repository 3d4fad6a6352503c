"""`kdtools sft`: supervised fine-tuning on the assistant tokens, with TRL's SFTTrainer.

    kdtools sft --model 3b --data 40k                      # Llama-3.2-3B on 40,000 Tulu 3 rows
    kdtools sft --model 70b --data 40k                     # the same-data teacher T_s
    kdtools sft --model 1b --data 10k --world toy          # the toy 1b, for real, on a CPU
    kdtools sft --model 1b --task translation --data full --world toy   # from its general SFT
    kdtools sft --model 3b --data 40k --match gkd          # the compute-matched control (sft_long)

Setup -> train -> save. Training happens in a hidden `.partial` sibling of the output folder;
the model, tokenizer and finally `run.json` are written there, and the folder is renamed into
place only when complete, so a crash never leaves something that looks finished.
`train(job)` is also what SeqKD calls on the teacher's samples (method 'seqkd').

The compute-matched control (`--match KD`, method `sft_long`): the SFT cell (the same model, data
and task) continued on the same data for as many optimizer steps as the KD run adds over it, so
KD is compared with the same number of student updates spent on plain fine-tuning. The steps are
read from the finished runs' manifests: a KD run that continued from this SFT (GKD's SFT-S on
general data) adds all of its steps; one that started where the SFT started (SeqKD from the base
model; GKD, Mix and 2-Stage on a domain task from the general SFT) adds its steps (2-Stage: both
stages) minus the SFT's. `--match mix|two_stage` takes `--synthetic SIZE`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from kdtools import costs, manifest, paths, staging, tasks, trainargs, tracking
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
    method: str = "sft"        # 'seqkd' on teacher samples, 'sft_long' the compute-matched control
    extra: tuple = ()          # further (key, value) dimensions, e.g. (('teacher', '70b'),)
    uses: tuple = ()           # shared generations it trains on: (folder, kind, rows or None), kdtools.costs

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
        return {**dims, **{k: v for k, v in self.extra if k in ("teacher", "samples", "match", "synthetic",
                                                                   "match_steps")}}


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


MATCHES = ("gkd", "seqkd", "mix", "two_stage")   # the KD runs a compute-matched control can match


def check_match(match: str | None, synthetic: str | None, task: str, init: str | None,
                max_steps: int | None) -> None:
    """The options of a compute-matched control (`--match`), before any file is read."""
    if match is None:
        if synthetic is not None:
            raise KdError("--synthetic goes with --match mix or two_stage (the control of a synthetic-data run)")
        return
    if match not in MATCHES:
        raise KdError(f"--match must be one of {', '.join(MATCHES)} (the KD run whose steps the control matches), "
                      f"got {match!r}")
    if (match in ("mix", "two_stage")) != (synthetic is not None):
        raise KdError(f"--match {match}: " + ("pass --synthetic SIZE (the KD run's synthetic set)"
                                               if synthetic is None else "--synthetic goes with mix or two_stage"))
    if match == "seqkd" and task != GENERAL or match in ("mix", "two_stage") and task == GENERAL:
        raise KdError(f"--match {match} is for {'general data' if match == 'seqkd' else 'domain tasks (--task)'}: "
                      "the control matches a KD run of the paper's grid")
    if init is not None:
        raise KdError("--init and --match both say where training starts: the control continues the SFT "
                      "of the same model, data and task; drop --init")
    if max_steps is not None:
        raise KdError("--max-steps and --match both set the step count (the control's is the KD run's added "
                      "steps); drop one")


def matched_steps(world: World, model: str, task: str, data: str, match: str, synthetic: str | None,
                  sft_dir: Path) -> tuple[int, dict]:
    """-> (the optimizer steps the KD run `match` adds over the SFT in `sft_dir`, what they came
    from). Read from the finished runs' manifests; a missing one is a KdError naming its command."""
    variant = f"synthetic-{synthetic}" if synthetic else ""
    kd_dir = paths.model_dir(world.results, world.name, model, match, task, data, variant)
    kd = manifest.read_manifest(kd_dir)
    if kd is None:
        options = f" --task {task}" if task != GENERAL else ""
        options += f" --method {match} --synthetic {synthetic}" if synthetic else ""
        verb = "seqkd" if match == "seqkd" else "gkd"
        raise KdError(f"--match {match} needs the finished {match} run it matches ({kd_dir}): run "
                      f"`kdtools --world {world.name} {verb} --student {model} --data {data}{options}` first")
    sft = manifest.read_manifest(sft_dir) or {}
    steps = {"kd": kd["metrics"]["steps"], "sft": sft["metrics"]["steps"]}
    if match == "two_stage":   # stage 1, cross-entropy on the synthetic pairs, is part of its student steps
        stage1 = manifest.read_manifest(paths.model_dir(world.results, world.name, model, "synth_sft", task,
                                                        data, variant)) or {}
        steps["stage1"] = (stage1.get("metrics") or {}).get("steps", 0)
    kd_steps = steps["kd"] + steps.get("stage1", 0)
    continued = Path(kd["config"].get("weights", "")).resolve() == Path(sft_dir).resolve()
    added = kd_steps if continued else kd_steps - steps["sft"]
    if added < 1:
        raise KdError(f"the {match} run ({kd_dir}) trains no more student steps than this SFT ({kd_steps} vs "
                      f"{steps['sft']} from the same start): the SFT itself is its step-matched control")
    how = "continued from this SFT: all its steps" if continued else "from the SFT's own start: its steps minus the SFT's"
    return added, {"run": str(kd_dir), "config_hash": kd.get("config_hash"), "steps": steps, "how": how}


def make_job(world: World, model: str, data: str, task: str = GENERAL, init: str | None = None,
             out: Path | None = None, max_steps: int | None = None, epochs: float | None = None,
             learning_rate: float | None = None, force: bool = False, match: str | None = None,
             synthetic: str | None = None) -> SftJob:
    """All checks that need no model: alias, size, data file, init, overrides, output folder; with
    `match`, the compute-matched control of that KD run (method sft_long)."""
    check_match(match, synthetic, task, init, max_steps)
    world.resolve_model(model)
    world.size_rows(data)
    if task != GENERAL:
        tasks.check_task(task)
    if synthetic is not None and synthetic not in (world.synth.get("sizes") or {}):
        raise KdError(f"--synthetic {synthetic}: use one of {', '.join(world.synth.get('sizes') or {})} "
                      f"(world '{world.name}', synth.sizes)")
    dataset = world.data.name if task == GENERAL else task
    hint = f"data --task {task}" if task != GENERAL else "data"
    data_file = subset_path(world, data, dataset, hint)
    if match is not None:
        return control_job(world, model, data, task, data_file, out, epochs, learning_rate, force, match, synthetic)
    weights, init_name, variant = resolve_init(world, model, task, init)
    train = override_train(world.train, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate)
    out = Path(out) if out else paths.model_dir(world.results, world.name, model, "sft", task, data, variant)
    staging.check_writable(out)
    return SftJob(world, model, weights, init_name, data, task, data_file, out, train, force)


def control_job(world: World, model: str, data: str, task: str, data_file: Path, out: Path | None,
                epochs: float | None, learning_rate: float | None, force: bool, match: str,
                synthetic: str | None) -> SftJob:
    """sft_long: the finished SFT of (model, task, data), continued on its data for the KD run's
    added steps, into models/<model>/sft_long/<task>/<data>+match-<match>[-<synthetic>]/."""
    sft_dir = finished_sft(world, model, task, data)
    steps, source = matched_steps(world, model, task, data, match, synthetic, sft_dir)
    train = override_train(world.train, max_steps=steps, epochs=epochs, learning_rate=learning_rate)
    label = f"{match}-{synthetic}" if synthetic else match
    out = Path(out) if out else paths.model_dir(world.results, world.name, model, "sft_long", task, data,
                                                f"match-{label}")
    staging.check_writable(out)
    extra = (("match", match), *((("synthetic", synthetic),) if synthetic else ()), ("match_steps", steps),
             ("match_run", source["run"]), ("match_config_hash", source["config_hash"]))
    return SftJob(world, model, str(sft_dir), "sft", data, task, data_file, out, train, force,
                  method="sft_long", extra=extra)


def run(job: SftJob) -> dict | None:
    with staging.claim(job.out, job.config, job.force) as partial:
        return manifest.read_manifest(job.out) if partial is None else train(job, partial)


def train(job: SftJob, partial: Path) -> dict | None:
    """Fine-tune on job.data_file in the staging folder `partial` (staging.claim) and publish
    job.out; returns the manifest on the main process, None on the others."""
    started = staging.begin(partial)
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
                             metrics, job.dims(), wandb_on, world=job.world,
                             uses=costs.uses_of(job.world, job.uses))
    console.print(
        f"[green]done[/] in {payload['wall_time_s']:.0f}s: loss {metrics['loss_first']} -> "
        f"{metrics['loss_last']} over {metrics['steps']} steps -> {job.out}"
    )
    return payload
