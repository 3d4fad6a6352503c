"""`kdtools seqkd`: sequence-level KD: the teacher writes K answers per prompt, the student is
trained with cross-entropy on them (Table 1 of the paper: 8b, full data, 5 samples).

    kdtools seqkd --student 8b --data full --samples 5
    kdtools seqkd --student 1b --data 10k --world toy

Two steps, each resumable: (1) the teacher (T_s by default, as for gkd) samples K completions for
every prompt of the subset through kdtools.generate, into
results/<world>/data/seqkd/<teacher>/<task>/<size>/; (2) kdtools.sft.train fine-tunes the student
(from its base model by default: SeqKD replaces SFT's human answers with the teacher's) on those
pairs, into results/<world>/models/<student>/seqkd/<task>/<size>/.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from kdtools import costs, manifest, paths, staging, tasks
from kdtools.data import read_jsonl, subset_path
from kdtools.annotate import annotate
from kdtools.generate import Sampling
from kdtools.gkd import resolve_teacher
from kdtools.sft import GENERAL, SftJob, override_train, resolve_init
from kdtools.sft import train as sft_train
from kdtools.world import World

console = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True)
class SeqkdJob:
    sft: SftJob                 # the student's training on the teacher's samples (method 'seqkd')
    teacher: str
    teacher_weights: str
    sampling: Sampling
    subset_file: Path           # the human subset whose prompts the teacher answers
    samples_dir: Path           # the teacher's generations (resumable shards + pairs.jsonl)

    def generation_config(self) -> dict:
        return {"teacher": self.teacher, "teacher_weights": self.teacher_weights,
                "subset_sha256": manifest.file_sha256(self.subset_file),
                "sampling": asdict(self.sampling), "seed": self.sft.world.seed}


def make_job(world: World, student: str, data: str, task: str = GENERAL, teacher: str | None = None,
             init: str | None = None, samples: int | None = None, temperature: float = 1.0,
             max_new_tokens: int | None = None, batch_size: int = 16, out: Path | None = None,
             max_steps: int | None = None, epochs: float | None = None,
             learning_rate: float | None = None, force: bool = False) -> SeqkdJob:
    world.resolve_model(student)
    world.size_rows(data)
    if task != GENERAL:
        tasks.check_task(task)
    samples = samples if samples is not None else world.gkd.get("seqkd_samples", 5)
    sampling = Sampling(temperature=temperature, samples=samples, batch_size=batch_size,
                        max_new_tokens=max_new_tokens or world.gkd.get("max_new_tokens", 1024))
    dataset = world.data.name if task == GENERAL else task
    subset = subset_path(world, data, dataset, "data" if task == GENERAL else f"data --task {task}")
    teacher = teacher or "70b"
    teacher_weights, teacher_variant = resolve_teacher(world, teacher, task, data)
    weights, init_name, init_variant = resolve_init(world, student, task, init)
    train = override_train(world.train, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate)
    variant = "+".join(v for v in (init_variant, teacher_variant) if v)
    out = Path(out) if out else paths.model_dir(world.results, world.name, student, "seqkd", task, data, variant)
    staging.check_writable(out)
    samples_dir = (paths.data_dir(world.results, world.name, "seqkd") / paths.model_name(teacher)
                   / task / f"{data}-x{samples}")
    pairs = samples_dir / "pairs.jsonl"
    sft = SftJob(world, student, weights, init_name, data, task, pairs, out, train, force,
                 method="seqkd", extra=(("teacher", teacher), ("samples", samples),
                                        ("teacher_weights", teacher_weights)),
                 uses=((samples_dir, "seqkd samples", None),))   # the teacher's generation, shared
    return SeqkdJob(sft, teacher, teacher_weights, sampling, subset, samples_dir)


def teacher_pairs(job: SeqkdJob) -> Path:
    """Step 1: the teacher's K answers per prompt as `messages` rows (resumable, cached), through
    kdtools.annotate: the one generation path of synth, annotate and seqkd."""
    pairs = job.samples_dir / "pairs.jsonl"
    if manifest.reusable(job.samples_dir, job.generation_config()):
        return pairs
    started = time.time()
    rows = read_jsonl(job.subset_file)
    prompts = [row["messages"][:last_assistant(row["messages"])] for row in rows]
    counts = annotate(job.teacher_weights, rows, prompts, job.samples_dir, job.sampling, job.sft.world.seed,
                      job.sft.world.chat_template, f"seqkd: {job.teacher} samples", f"seqkd/{job.teacher}")
    manifest.write_manifest(job.samples_dir, "seqkd-samples", job.generation_config(), started, **counts,
                            cost=costs.measure(started))
    return pairs


def last_assistant(messages: list[dict]) -> int:
    """Index of the last assistant turn: the prompt is everything before it."""
    return max(i for i, m in enumerate(messages) if m["role"] == "assistant")


def run(job: SeqkdJob) -> dict | None:
    """The main process writes the teacher's samples (a no-op when they exist for this config)
    while the other ranks wait for them; then every rank trains the student on them."""
    def sampled() -> bool:
        return manifest.reusable(job.samples_dir, job.generation_config()) is not None

    with staging.claim(job.sft.out, job.sft.config, job.sft.force, prepare=lambda: teacher_pairs(job),
                       prepared=sampled) as partial:
        return manifest.read_manifest(job.sft.out) if partial is None else sft_train(job.sft, partial)
