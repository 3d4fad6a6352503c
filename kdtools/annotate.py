"""`kdtools annotate`: a teacher answers inputs; the pairs come out in Tulu's `messages` schema.

    kdtools annotate --task summarization --inputs results/paper/data/synth/summarization/100k.jsonl
    kdtools annotate --teacher 70b-it --inputs my_prompts.jsonl --samples 3
    kdtools annotate --world toy --task translation --inputs results/toy/data/synth/translation/100k.jsonl

The task teacher by default: the 70b SFT'd on the task's training set (T at temperature 0.6, the
paper's Section 4.3). Input rows may be synthetic inputs ({"input": ...}, wrapped in the task's
prompt), conversations ({"messages": [...]}, answered after their last user turn) or
{"prompt": ...}. Generation goes through kdtools.generate (sharded, resumable, deterministic);
`annotate()` below is also what SeqKD uses: one generation path.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from kdtools import costs, manifest, paths, tasks
from kdtools.data import read_jsonl
from kdtools.errors import KdError
from kdtools.generate import Sampling, generate
from kdtools.world import World

console = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True)
class AnnotateJob:
    world: World
    teacher: str                # alias or path as given
    teacher_weights: str
    task: str | None
    inputs: Path
    out_dir: Path
    sampling: Sampling
    force: bool = False

    def config(self) -> dict:
        return {"world": self.world.name, "teacher": self.teacher, "teacher_weights": self.teacher_weights,
                "task": self.task, "inputs": str(self.inputs), "inputs_sha256": manifest.file_sha256(self.inputs),
                "sampling": asdict(self.sampling), "seed": self.world.seed,
                "chat_template": self.world.chat_template}


def prompts_of(rows: list[dict], task: str | None, language: str, where: Path) -> list[list[dict]]:
    """Each row as the conversation the teacher continues."""
    out = []
    for i, row in enumerate(rows):
        if isinstance(row.get("messages"), list):
            users = [j for j, m in enumerate(row["messages"]) if m.get("role") == "user"]
            if not users:
                raise KdError(f"{where} row {i + 1}: no user turn to answer")
            out.append(row["messages"][: users[-1] + 1])
        elif isinstance(row.get("input"), str):
            if task is None:
                raise KdError(f"{where} holds bare inputs: pass --task so they get the task's prompt")
            out.append([{"role": "user", "content": tasks.prompt_from_input(task, row["input"], language)}])
        elif isinstance(row.get("prompt"), str):
            out.append([{"role": "user", "content": row["prompt"]}])
        else:
            raise KdError(f"{where} row {i + 1}: needs 'messages', 'input' or 'prompt'")
    return out


def annotate(teacher_weights: str, rows: list[dict], prompts: list[list[dict]], out_dir: Path,
             sampling: Sampling, seed: int, chat_template: str | None, label: str, source: str) -> dict:
    """Generate the teacher's answers and write out_dir/pairs.jsonl (rows with an empty answer
    dropped); return counts. Each pair keeps `input_index`, the row it answers, so nested
    subsets of the inputs map to nested subsets of the pairs."""
    generated = generate(teacher_weights, prompts, out_dir, sampling, seed, chat_template, label=label)
    pairs = [{"id": f"{rows[g['index']].get('id', g['index'])}#{g['sample']}",
              "input_index": g["index"],
              "messages": g["messages"] + [{"role": "assistant", "content": g["completion"].strip()}],
              "source": source}
             for g in generated if g["completion"].strip()]
    if not pairs:
        raise KdError(f"the teacher ({teacher_weights}) produced only empty answers: check its chat template")
    manifest.atomic_write_text(out_dir / "pairs.jsonl",
                               "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    return {"prompts": len(prompts), "pairs": len(pairs), "dropped_empty": len(generated) - len(pairs),
            "truncated": sum(g["finish_reason"] == "length" for g in generated)}


def make_job(world: World, inputs: Path, teacher: str | None = None, task: str | None = None,
             temperature: float | None = None, samples: int = 1, max_new_tokens: int | None = None,
             batch_size: int = 16, out: Path | None = None, force: bool = False) -> AnnotateJob:
    from kdtools.gkd import resolve_teacher

    if task is not None:
        tasks.check_task(task)
    inputs = Path(inputs)
    if not inputs.is_file():
        raise KdError(f"--inputs {inputs} does not exist: run `kdtools --world {world.name} synth` first or fix the path")
    teacher = teacher or "70b"
    if teacher in world.models and not teacher.endswith("-it") and task is None:
        raise KdError(f"--teacher {teacher} means its SFT on a task: pass --task, or --teacher 70b-it / a model folder")
    teacher_weights, _ = resolve_teacher(world, teacher, task or "general", "full")
    sampling = Sampling(
        temperature=world.synth.get("annotate_temperature", 0.6) if temperature is None else temperature,
        top_p=1.0, samples=samples, batch_size=batch_size,
        max_new_tokens=max_new_tokens or world.synth.get("max_new_tokens") or world.gkd.get("max_new_tokens", 1024))
    out_dir = Path(out) if out else annotated_dir(world, teacher, task, inputs)
    return AnnotateJob(world, teacher, teacher_weights, task, inputs, out_dir, sampling, force)


def annotated_dir(world: World, teacher: str, task: str | None, inputs: Path) -> Path:
    """results/<world>/data/annotated/<task>/<teacher>/<inputs stem>/."""
    return (paths.data_dir(world.results, world.name, "annotated") / (task or "general")
            / paths.model_name(teacher) / Path(inputs).stem)


def run(job: AnnotateJob) -> dict:
    if done := manifest.reusable(job.out_dir, job.config(), job.force):
        console.print(f"[green]up to date:[/] {job.out_dir}/pairs.jsonl")
        return done
    started = time.time()
    rows = read_jsonl(job.inputs)
    if not rows:
        raise KdError(f"--inputs {job.inputs} has no rows")
    prompts = prompts_of(rows, job.task, job.world.source_language, job.inputs)
    counts = annotate(job.teacher_weights, rows, prompts, job.out_dir, job.sampling, job.world.seed,
                      job.world.chat_template, f"annotate: {job.teacher}", f"annotate/{job.teacher}")
    payload = manifest.write_manifest(job.out_dir, "annotate", job.config(), started, **counts,
                                      cost=costs.measure(started))
    console.print(f"[green]done[/]: {counts['pairs']} pairs ({counts['dropped_empty']} empty dropped) -> "
                  f"{job.out_dir / 'pairs.jsonl'}")
    return payload
