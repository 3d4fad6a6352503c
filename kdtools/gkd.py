"""`kdtools gkd`: on-policy knowledge distillation (GKD, generalized JSD) from a teacher.

    kdtools gkd --student 3b --data 40k                    # T_s = 70b SFT'd on 40k; init SFT-S
    kdtools gkd --student 8b --data full --init base       # Base-S (Figure 1)
    kdtools gkd --student 8b --data full --teacher 70b-it  # the strong teacher (Figure 3)
    kdtools gkd --student 1b --data 10k --world toy        # for real, on a CPU

Defaults are the paper's: lambda 0.5, beta 0.5, Appendix A.2 hyperparameters. The teacher alias
'70b' means the 70b SFT'd on the same data (T_s, from the results tree); an alias ending in
'-it' is an instruction-tuned model used as is; a path is used as is. The student starts from
its own SFT on the same data (SFT-S) unless --init says otherwise. Teacher and student must share
one tokenizer: GKD compares next-token distributions token by token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from kdtools import costs, manifest, paths, ranks, staging, tasks, trainargs, tracking
from kdtools.data import subset_path
from kdtools.errors import KdError
from kdtools.sft import GENERAL, SftJob, finished_sft, override_train
from kdtools.sft import train as sft_train
from kdtools.world import TrainDefaults, World

console = Console(stderr=True, soft_wrap=True)
LOSSES = ("fused", "plain")
METHODS = ("gkd", "mix", "two_stage")


@dataclass(frozen=True)
class GkdSettings:
    """The distillation objective; defaults are the paper's (Section 3.3, Appendix A.2)."""

    lmbda: float = 0.5             # fraction of optimizer steps on the student's own samples
    beta: float = 0.5              # generalized JSD: 0 = KL(teacher||student), 1 = KL(student||teacher)
    temperature: float = 1.0       # sampling temperature of the on-policy samples
    max_new_tokens: int = 1024     # cap on an on-policy sample
    loss: str = "fused"            # 'fused' (chunked, no full logits) or 'plain' (TRL's)
    teacher_cache: bool = False    # off-policy batches use the teacher's cached top-k (approximate)
    teacher_cache_k: int = 64      # log-probabilities kept per token by the teacher cache

    def __post_init__(self):
        if not 0 <= self.lmbda <= 1:
            raise KdError(f"--lmbda must be in [0, 1] (the on-policy fraction), got {self.lmbda}")
        if not 0 <= self.beta <= 1:
            raise KdError(f"--beta must be in [0, 1] (0 forward KL, 1 reverse KL), got {self.beta}")
        if self.temperature <= 0:
            raise KdError(f"--temperature must be positive, got {self.temperature}")
        if self.max_new_tokens < 1:
            raise KdError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        if self.loss not in LOSSES:
            raise KdError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.teacher_cache_k < 1:
            raise KdError(f"--teacher-cache-k must be at least 1, got {self.teacher_cache_k}")

    def config(self) -> dict:
        """The settings as recorded: the teacher cache's fields only when it is on, so the
        config hash of every exact run is what it was before the cache existed."""
        settings = asdict(self)
        if not self.teacher_cache:
            del settings["teacher_cache"], settings["teacher_cache_k"]
        return settings


@dataclass(frozen=True)
class GkdJob:
    world: World
    student: str               # alias or path as given; names the output folder
    weights: str               # where the student starts
    init: str                  # 'sft', 'base' or a folder
    teacher: str               # alias or path as given
    teacher_weights: str
    data: str
    task: str
    data_file: Path
    out: Path
    train: TrainDefaults
    settings: GkdSettings
    force: bool = False
    method: str = "gkd"             # 'mix': GKD on D + D^s; 'two_stage': CE on D^s, then GKD on D
    synthetic: str | None = None    # synthetic set size label (mix, two_stage)
    stage1: SftJob | None = None    # two_stage: the cross-entropy stage on the synthetic pairs
    uses: tuple = ()                # mix: the shared synthetic generations it trains on (kdtools.costs)

    def config(self) -> dict:
        extra = {"synthetic": self.synthetic,
                 "stage1_hash": manifest.config_hash(self.stage1.config()) if self.stage1 else None}
        return {
            "world": self.world.name, "method": self.method, **extra, "student": self.student,
            "weights": self.weights, "init": self.init, "teacher": self.teacher,
            "teacher_weights": self.teacher_weights, "data": self.data, "task": self.task,
            "data_file": str(self.data_file), "data_sha256": manifest.file_sha256(self.data_file),
            "chat_template": self.world.chat_template, "seed": self.world.seed,
            "train": trainargs.hashed(self.train), "gkd": self.settings.config(),
        }

    def dims(self) -> dict:
        dims = {"student": self.student, "method": self.method, "size": self.data, "task": self.task,
                "init": self.init, "teacher": self.teacher}
        return {**dims, "synthetic": self.synthetic} if self.synthetic else dims


def resolve_student(world: World, student: str, task: str, size: str, init: str | None) -> tuple[str, str, str]:
    """-> (weights, init name, output-folder variant). SFT-S by default: the student's SFT on the
    same data (general), or its full-data general SFT (domain tasks, as in the paper)."""
    init = init or "sft"
    variant = "" if init == "sft" else f"init-{paths.model_name(init)}"
    if init == "sft":
        folder = finished_sft(world, student, task, size) if task == GENERAL else \
            finished_sft(world, student, GENERAL, world.grid.full)
        return str(folder), "sft", variant
    if init == "base":
        return world.resolve_model(student), "base", variant
    if not (Path(init) / "config.json").is_file():
        raise KdError(f"--init {init}: not 'sft', 'base' or a model folder with a config.json")
    return init, init, variant


def resolve_teacher(world: World, teacher: str, task: str, size: str) -> tuple[str, str]:
    """-> (weights, output-folder variant). An alias is the teacher SFT'd on the same data (T_s;
    on a domain task, on the task's data), except '-it' aliases, used as they are."""
    variant = "" if teacher == "70b" else f"teacher-{paths.model_name(teacher)}"
    if teacher in world.models and not teacher.endswith("-it"):
        return str(finished_sft(world, teacher, task, size)), variant
    return world.resolve_model(teacher), variant


def synthetic_pairs(world: World, task: str, teacher: str, label: str) -> Path:
    """The first `label` rows' worth of the teacher's annotated synthetic pool (nested subsets:
    5k in 10k in ... in 100k), written once as a file; a KdError naming the commands if missing."""
    sizes = world.synth.get("sizes") or {}
    if label not in sizes:
        raise KdError(f"--synthetic {label}: use one of {', '.join(sizes) or '(none: add synth.sizes)'} "
                      f"(world '{world.name}', synth.sizes)")
    need = sizes[label]
    base = paths.data_dir(world.results, world.name, "annotated") / task / paths.model_name(teacher)
    for pool in sorted(base.glob("*")):
        done = manifest.read_manifest(pool)
        # coverage counts the inputs annotated, not the pairs kept (empty answers are dropped)
        if done is None or done.get("prompts", 0) < need or not (pool / "pairs.jsonl").is_file():
            continue
        pairs = [json.loads(line) for line in (pool / "pairs.jsonl").read_text().splitlines()]
        prefix = pool / f"synthetic-{label}.jsonl"
        text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs if p["input_index"] < need)
        if not prefix.is_file() or prefix.read_text() != text:
            manifest.atomic_write_text(prefix, text)
        return prefix
    top = max(sizes, key=sizes.get)
    synth_dir = paths.data_dir(world.results, world.name, "synth") / task
    raise KdError(
        f"no annotated synthetic pool of {task} covers {label} ({need} inputs) under {base}: run "
        f"`kdtools --world {world.name} synth --task {task} --n {top}` then `kdtools --world {world.name} "
        f"annotate --task {task} --teacher {teacher} --inputs {synth_dir / (top + '.jsonl')}`"
    )


def mixed_data(world: World, task: str, teacher: str, label: str, human: Path, synthetic: Path) -> Path:
    """Mix: the human training rows followed by the synthetic pairs, as one file."""
    out = paths.data_dir(world.results, world.name, "mix") / task / paths.model_name(teacher) / f"{label}.jsonl"
    text = human.read_text() + synthetic.read_text()
    if not out.is_file() or out.read_text() != text:
        manifest.atomic_write_text(out, text)
    return out


def check_same_tokenizer(student_weights: str, teacher_weights: str) -> None:
    """Different tokenizers make GKD silently wrong (token i means different things): refuse."""
    from transformers import AutoTokenizer

    s = AutoTokenizer.from_pretrained(student_weights).get_vocab()
    t = AutoTokenizer.from_pretrained(teacher_weights).get_vocab()
    if s != t:
        differ = len(set(s.items()) ^ set(t.items()))
        raise KdError(
            f"teacher and student tokenizers differ ({len(t)} vs {len(s)} tokens, {differ} entries "
            "disagree): GKD compares distributions token by token, so pick a teacher of the same "
            "model family (one tokenizer)"
        )


def make_job(world: World, student: str, data: str, task: str = GENERAL, teacher: str | None = None,
             init: str | None = None, lmbda: float | None = None, beta: float | None = None,
             temperature: float | None = None, max_new_tokens: int | None = None,
             loss: str | None = None, out: Path | None = None, max_steps: int | None = None,
             epochs: float | None = None, learning_rate: float | None = None,
             force: bool = False, method: str = "gkd", synthetic: str | None = None,
             teacher_cache: bool | None = None, teacher_cache_k: int | None = None) -> GkdJob:
    """Every check that needs no model: options, data, student init, teacher, tokenizers, output.
    `method` mix or two_stage (domain tasks) also needs the annotated synthetic set `synthetic`."""
    if method not in METHODS:
        raise KdError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method != "gkd" and (task == GENERAL or synthetic is None):
        raise KdError(f"--method {method} is for domain tasks with synthetic data: pass --task and --synthetic SIZE")
    if method == "gkd" and synthetic is not None:
        raise KdError("--synthetic goes with --method mix or two_stage")
    given = {"lmbda": lmbda, "beta": beta, "temperature": temperature,
             "max_new_tokens": max_new_tokens, "loss": loss, "teacher_cache": teacher_cache,
             "teacher_cache_k": teacher_cache_k}
    defaults = {k: v for k, v in world.gkd.items() if k in GkdSettings.__dataclass_fields__}
    settings = GkdSettings(**{**defaults, **{k: v for k, v in given.items() if v is not None}})
    if teacher_cache_k is not None and not settings.teacher_cache:
        raise KdError("--teacher-cache-k goes with --teacher-cache")
    world.resolve_model(student)
    world.size_rows(data)
    if task != GENERAL:
        tasks.check_task(task)
    dataset = world.data.name if task == GENERAL else task
    data_file = subset_path(world, data, dataset, "data" if task == GENERAL else f"data --task {task}")
    weights, init_name, init_variant = resolve_student(world, student, task, data, init)
    teacher = teacher or "70b"
    teacher_weights, teacher_variant = resolve_teacher(world, teacher, task, data)
    check_same_tokenizer(weights, teacher_weights)
    train = override_train(world.train, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate)
    synthetic_variant = f"synthetic-{synthetic}" if synthetic else ""
    cache_variant = f"tcache-k{settings.teacher_cache_k}" if settings.teacher_cache else ""
    variant = "+".join(v for v in (init_variant, teacher_variant, synthetic_variant, cache_variant,
                                   tuned_variant(settings, GkdSettings(**defaults))) if v)
    out = Path(out) if out else paths.model_dir(world.results, world.name, student, method, task, data, variant)
    staging.check_writable(out)
    stage1, uses = None, ()
    if method != "gkd":
        pairs = synthetic_pairs(world, task, teacher, synthetic)
        uses = synthetic_uses(pairs, world.synth["sizes"][synthetic])
        if method == "mix":
            data_file = mixed_data(world, task, teacher, synthetic, data_file, pairs)
        else:  # two_stage: cross-entropy on the synthetic pairs first, from the same init
            stage1_out = paths.model_dir(world.results, world.name, student, "synth_sft", task, data, variant)
            stage1 = SftJob(world, student, weights, init_name, data, task, pairs, stage1_out, train,
                            force, method="synth_sft", extra=(("synthetic", synthetic),), uses=uses)
            weights, uses = str(stage1_out), ()   # stage 1 trains on them: its run.json lists them
    return GkdJob(world, student, weights, init_name, teacher, teacher_weights, data, task,
                  data_file, out, train, settings, force, method, synthetic, stage1, uses)


def synthetic_uses(pairs: Path, inputs: int) -> tuple:
    """The shared generations behind a synthetic set: the teacher's annotation of the pool and the
    synthetic inputs it annotated, `inputs` rows of each (kdtools.costs divides their cost)."""
    pool = pairs.parent
    used = [(pool, "annotate", inputs)]
    source = Path(((manifest.read_manifest(pool) or {}).get("config") or {}).get("inputs", ""))
    if (manifest.read_manifest(source.parent) or {}).get("verb") == "synth":
        used.append((source.parent, "synth", inputs))
    return tuple(used)


def tuned_variant(settings: GkdSettings, defaults: GkdSettings) -> str:
    """'lmbda-0.0+beta-0.9' for GKD knobs off the world's defaults (a sweep's runs land in
    folders of their own); '' at the paper's settings."""
    return "+".join(f"{name}-{getattr(settings, name)}" for name in ("lmbda", "beta", "temperature")
                    if getattr(settings, name) != getattr(defaults, name))


HELDOUT_ROWS = 32


def heldout_rows(job: GkdJob) -> list[dict]:
    """Up to HELDOUT_ROWS conversations of the same dataset that the subset does not contain
    (none when the subset is the whole dataset): where the JSD to the teacher is measured."""
    full = job.data_file.parent / "full.jsonl"
    if not full.is_file() or full == job.data_file:
        return []
    seen = {json.loads(line).get("id") for line in job.data_file.read_text().splitlines()}
    rows = []
    with open(full, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("id") not in seen:
                rows.append(row)
            if len(rows) == HELDOUT_ROWS:
                break
    return rows


def heldout_jsd(student, teacher, tokenizer, rows: list[dict], beta: float, max_length: int) -> float | None:
    """Mean token-level generalized JSD(teacher, student) on the held-out rows' responses (one
    row at a time: the full logits of a single row are affordable even at a 128k vocabulary)."""
    if not rows:
        return None
    import torch
    from trl.experimental.utils import DataCollatorForChatML

    from kdtools.losses import generalized_jsd_loss

    collate = DataCollatorForChatML(tokenizer=tokenizer, max_length=max_length)
    total, tokens = 0.0, 0
    student.eval()
    with torch.no_grad():
        for row in rows:
            batch = {k: v.to(student.device) for k, v in collate([{"messages": row["messages"]}]).items()}
            s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            n = int((labels != -100).sum())
            total += float(generalized_jsd_loss(s[:, :-1], t[:, :-1], labels, beta=beta, reduction="sum"))
            tokens += n
    student.train()
    return round(total / max(tokens, 1), 6)


def teacher_cache(job: GkdJob, trainer, tokenizer, train_set):
    """The teacher's top-k on this job's data, built once (first job) and reused (the others).
    None under DeepSpeed, where the teacher is sharded: there the loss stays exact."""
    from kdtools import teachercache

    if trainer.is_deepspeed_enabled:
        console.print("[yellow]teacher cache off[/]: not available under DeepSpeed (sharded teacher)")
        return None
    fields = teachercache.key_fields(job.teacher_weights, job.data_file, job.settings.teacher_cache_k,
                                     job.train.max_length, job.world.chat_template)
    teacher = trainer.accelerator.unwrap_model(trainer.teacher_model)
    cache, built = teachercache.ensure(job.world.results, job.world.name, job.teacher, teacher, tokenizer,
                                       list(train_set), fields)
    console.print(f"[bold]teacher cache[/] {'built' if built else 'reused'}: {cache.folder}")
    return cache


def run(job: GkdJob) -> dict | None:
    with staging.claim(job.out, job.config, job.force) as partial:
        if partial is None:
            return manifest.read_manifest(job.out)
        if job.stage1:
            with staging.claim(job.stage1.out, job.stage1.config, job.stage1.force) as stage1:
                if stage1 is not None:
                    console.print(f"[bold]two_stage[/] stage 1: cross-entropy on {job.stage1.data_file}")
                    sft_train(job.stage1, stage1)
            ranks.barrier()  # stage 2 loads what the main process has just published
        return train(job, partial)


def train(job: GkdJob, partial: Path) -> dict | None:
    """Distil into the staging folder `partial` (staging.claim) and publish job.out; returns the
    manifest on the main process, None on the others."""
    started = staging.begin(partial)
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.experimental.gkd import GKDConfig

    from kdtools import checkpoint
    from kdtools.chat import prepare_tokenizer
    from kdtools.gkd_trainer import KdGKDTrainer

    console.print(f"[bold]gkd[/] {job.student} ({job.weights}) <- teacher {job.teacher} "
                  f"({job.teacher_weights}) on {job.data_file} -> {job.out}")
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(job.weights), job.world.chat_template)
    train_set = datasets.Dataset.from_json(str(job.data_file)).select_columns(["messages"])
    wandb_on = tracking.start_run(job.world, job.method, job.dims(), job.config(), job.out)
    s = job.settings
    # The config comes first: under DeepSpeed ZeRO-3 it makes from_pretrained shard while loading.
    args = GKDConfig(
        **trainargs.trainer_kwargs(job.train, partial / "trainer", "wandb" if wandb_on else "none",
                                   job.world.seed, str(job.out)),
        lmbda=s.lmbda, beta=s.beta, temperature=s.temperature, max_new_tokens=s.max_new_tokens,
        disable_dropout=True, seq_kd=False,
    )
    dtype = trainargs.torch_dtype(job.train)
    student = AutoModelForCausalLM.from_pretrained(job.weights, dtype=dtype)
    teacher = AutoModelForCausalLM.from_pretrained(job.teacher_weights, dtype=dtype)
    for model in (student, teacher):
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    guard = checkpoint.Guard()
    trainer = KdGKDTrainer(
        model=student, teacher_model=teacher, args=args, train_dataset=train_set,
        processing_class=tokenizer, fused_loss=s.loss == "fused", policy_seed=job.world.seed,
        callbacks=[guard],
    )
    if s.teacher_cache:
        trainer.teacher_cache = teacher_cache(job, trainer, tokenizer, train_set)
    # Under DeepSpeed the weights are sharded outside the engine's forward: measure only without.
    heldout = [] if trainer.is_deepspeed_enabled else heldout_rows(job)
    jsd_before = heldout_jsd(student, teacher, tokenizer, heldout, s.beta, job.train.max_length)
    checkpoint.train(trainer, guard, partial / "trainer")
    checkpoint.save_model(trainer, partial)
    steps = trainer.onpolicy_steps + trainer.offpolicy_steps
    metrics = {
        **trainargs.loss_summary(trainer.state.log_history),
        "steps": trainer.state.global_step,
        "onpolicy_steps": trainer.onpolicy_steps,
        "onpolicy_fraction": round(trainer.onpolicy_steps / steps, 4) if steps else None,
        "onpolicy_sampling_s": round(trainer.onpolicy_seconds, 3),  # time spent sampling (this rank)
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "rows": len(train_set),
        "loss_impl": ("liger" if trainer.liger else "fused") if trainer.fused_loss else "plain",
        **({"teacher_forwards": trainer.teacher_forwards, "teacher_cache_hits": trainer.teacher_cache_hits,
            "teacher_cache": str(trainer.teacher_cache.folder) if trainer.teacher_cache else None}
           if s.teacher_cache else {}),
        # JSD(teacher, student) on held-out conversations of the same dataset, before and after
        "heldout_rows": len(heldout),
        "heldout_jsd_before": jsd_before,
        "heldout_jsd_after": heldout_jsd(trainer.model, teacher, tokenizer, heldout,
                                         job.settings.beta, job.train.max_length),
    }
    if not trainer.is_world_process_zero():
        return None
    payload = staging.finish(partial, job.out, tokenizer, job.method, job.config(), started, metrics,
                             job.dims(), wandb_on, world=job.world, uses=costs.uses_of(job.world, job.uses))
    console.print(f"[green]done[/] in {payload['wall_time_s']:.0f}s: JSD {metrics['loss_first']} -> "
                  f"{metrics['loss_last']}, {metrics['onpolicy_steps']}/{steps} steps on-policy -> {job.out}")
    return payload
