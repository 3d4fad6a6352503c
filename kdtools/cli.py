"""The `kdtools` command line: one verb per stage of a knowledge-distillation study.

    kdtools --help
    kdtools --world toy toy
    kdtools --world toy data
    kdtools --world toy sft --model 1b --data 10k

Each command is thin: it parses options, builds one validated job config and hands it to the
stage's `run()` function. Heavy libraries (torch, transformers, TRL) are imported only inside
the stage, so `--help` stays instant. A KdError becomes one red line and exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kdtools.errors import PREEMPTED_EXIT, KdError, Preempted, disk_full_or

app = typer.Typer(
    name="kdtools",
    help="Run LLM post-training knowledge-distillation studies (SFT, GKD, SeqKD, two-stage KD) "
    "end to end, on Slurm or on a laptop CPU with the embedded toy world.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
err = Console(stderr=True)


class State:
    world: str = "paper"
    results: str | None = None


# Every verb also takes --world/--results after its name (`kdtools sft --world toy ...`),
# overriding the global ones given before it.
VerbWorld = Annotated[str | None, typer.Option("--world", "-w", help="paper | toy | smoke | a world YAML (same as the global option).")]
VerbResults = Annotated[str | None, typer.Option("--results", help="Results root (same as the global option).")]


# Options several verbs share, declared once.
DataSize = Annotated[str, typer.Option(help="Data size as the paper writes it: 10k ... 939k, full.")]
Task = Annotated[str, typer.Option(help="'general' (Tulu 3) or a domain task: translation (Flores-200 as->en; alias flores), summarization (alias dialogsum), arc.")]
OutDir = Annotated[Path | None, typer.Option(help="Output folder (default: derived from the arguments).")]
MaxSteps = Annotated[int | None, typer.Option(help="Stop after this many optimizer steps (quick looks).")]
Epochs = Annotated[float | None, typer.Option(help="Override the world's epochs.")]
LearningRate = Annotated[float | None, typer.Option("--lr", help="Override the world's learning rate.")]
Retrain = Annotated[bool, typer.Option(help="Retrain even if a finished run with another config exists.")]


def _world(world: str | None = None, results: str | None = None):
    from kdtools.world import load_world

    return load_world(world or State.world, results or State.results)


def _fail(exc: KdError) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _run(stage_module: str, world_name: str | None, results_root: str | None, **options) -> None:
    """Load the world, import the stage (heavy libraries load only now), build its validated job
    and run it; a KdError becomes one red line and exit code 2."""
    try:
        if options.get("task"):
            from kdtools.tasks import canonical_task

            options["task"] = canonical_task(options["task"])
        stage = importlib.import_module(stage_module)
        stage.run(stage.make_job(_world(world_name, results_root), **options))
    except KdError as exc:
        _fail(exc)
    except Preempted as exc:
        from kdtools import ranks

        if ranks.is_main():
            err.print(f"[bold yellow]preempted:[/] {exc}", highlight=False, soft_wrap=True)
        if ranks.distributed():
            ranks.exit_main_last(PREEMPTED_EXIT)
        raise typer.Exit(PREEMPTED_EXIT) from None
    except OSError as exc:
        problem = disk_full_or(exc, Path(exc.filename or ".").parent)
        if problem is exc:
            raise
        _fail(problem)


@app.callback()
def main(
    world: Annotated[
        str,
        typer.Option(
            "--world", "-w", envvar="KDTOOLS_WORLD",
            help="paper (real models and data, needs the hub), toy (embedded, CPU), smoke (tiny "
            "toy for CI), or the path of a world YAML.",
        ),
    ] = "paper",
    results: Annotated[
        str | None,
        typer.Option("--results", envvar="KDTOOLS_RESULTS", help="Results root (default ./results)."),
    ] = None,
) -> None:
    """kdtools: knowledge distillation in post-training, reproducible end to end."""
    State.world = world
    State.results = results


@app.command()
def toy(
    force: Annotated[bool, typer.Option(help="Rebuild even if the cached world matches its config.")] = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Build the embedded toy world: generated data and benchmarks, a tokenizer trained locally,
    and toy base models 1b < 3b < 8b < 70b plus 70b-it, all deterministic from the world's seed.
    Cached: rebuilt only when the world's `toy` config changes."""
    _run("kdtools.toy.build", world, results, force=force)


@app.command()
def data(
    source: Annotated[
        str | None,
        typer.Option(help="Hub dataset id or local .jsonl/.parquet with a `messages` column "
                     "(default: the world's data.source, e.g. allenai/tulu-3-sft-mixture)."),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(help="Comma-separated size labels to write, e.g. 10k,40k,full (default: all the world's sizes)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Dataset folder name (default: the world's data.name).")] = None,
    task: Annotated[
        str | None,
        typer.Option(help="A domain task (translation, summarization, arc): its training split as `messages`, size 'full'."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rewrite even if a complete manifest exists.")] = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Write nested, deterministic subsets (10k in 20k in ... in full) of the instruction data as
    JSONL files, with a manifest of counts and hashes."""
    _run("kdtools.data", world, results, source=source, sizes=sizes, name=name, task=task,
         force=force)


@app.command()
def sft(
    model: Annotated[str, typer.Option(help="Model alias (1b 3b 8b 70b 70b-it) or a model folder.")],
    data: DataSize,
    task: Task = "general",
    init: Annotated[
        str | None,
        typer.Option(help="Start from: 'base' (the model itself), 'sft' (its full-data general SFT), "
                     "or a model folder. Default: base for general, sft for domain tasks."),
    ] = None,
    match: Annotated[
        str | None,
        typer.Option(help="Train the compute-matched control of a KD run (method sft_long): this SFT continued on "
                     "the same data for as many optimizer steps as that run adds: gkd, seqkd, mix or two_stage."),
    ] = None,
    synthetic: Annotated[str | None, typer.Option(help="With --match mix|two_stage: the KD run's synthetic set size.")] = None,
    out: OutDir = None,
    max_steps: MaxSteps = None,
    epochs: Epochs = None,
    learning_rate: LearningRate = None,
    force: Retrain = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Supervised fine-tuning with TRL's SFTTrainer on the assistant tokens, with the paper's
    hyperparameters (AdamW, lr 5e-6, batch 128, 2 epochs, linear, 3% warmup, 4096 tokens).
    `--match KD` trains the compute-matched control of that KD run instead (sft_long)."""
    _run("kdtools.sft", world, results, model=model, data=data, task=task, init=init, out=out,
         max_steps=max_steps, epochs=epochs, learning_rate=learning_rate, force=force, match=match,
         synthetic=synthetic)


@app.command()
def gkd(
    student: Annotated[str, typer.Option(help="Student alias (1b 3b 8b) or a model folder.")],
    data: DataSize,
    task: Task = "general",
    teacher: Annotated[str | None, typer.Option(help="'70b' = the 70b SFT'd on the same data (T_s, default); '70b-it' = the instruction-tuned model as is; or a model folder.")] = None,
    init: Annotated[str | None, typer.Option(help="'sft' = the student's SFT on the same data (SFT-S, default), 'base' (Base-S), or a model folder.")] = None,
    lmbda: Annotated[float | None, typer.Option(help="On-policy fraction (paper: 0.5).")] = None,
    beta: Annotated[float | None, typer.Option(help="Generalized JSD beta: 0 forward KL, 1 reverse KL (paper: 0.5).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature of on-policy samples (default 1.0).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Cap on an on-policy sample's length.")] = None,
    loss: Annotated[str | None, typer.Option(help="'fused' (chunked; never builds full-vocabulary logits; default) or 'plain' (TRL's).")] = None,
    teacher_cache: Annotated[bool | None, typer.Option("--teacher-cache/--no-teacher-cache", help="Off-policy batches use the teacher's top-k log-probabilities, computed once per (teacher, data) and shared by every student (approximate; off by default: the paper's loss is exact).")] = None,
    teacher_cache_k: Annotated[int | None, typer.Option(help="Log-probabilities kept per token by --teacher-cache (default 64).")] = None,
    method: Annotated[str, typer.Option(help="gkd; or for domain tasks mix (GKD on human + synthetic data) or two_stage (CE on synthetic pairs, then GKD on human data).")] = "gkd",
    synthetic: Annotated[str | None, typer.Option(help="Synthetic set size for mix/two_stage: 5k 10k 20k 50k 100k (nested subsets of one annotated pool).")] = None,
    out: OutDir = None,
    max_steps: MaxSteps = None,
    epochs: Epochs = None,
    learning_rate: LearningRate = None,
    force: Retrain = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Generalized knowledge distillation (GKD): the student learns the teacher's token
    distributions on a mix of dataset responses and its own samples (lambda 0.5, beta 0.5)."""
    _run("kdtools.gkd", world, results, student=student, data=data, task=task, teacher=teacher,
         init=init, lmbda=lmbda, beta=beta, temperature=temperature, max_new_tokens=max_new_tokens,
         loss=loss, out=out, max_steps=max_steps, epochs=epochs, learning_rate=learning_rate,
         force=force, method=method, synthetic=synthetic, teacher_cache=teacher_cache,
         teacher_cache_k=teacher_cache_k)


@app.command()
def seqkd(
    student: Annotated[str, typer.Option(help="Student alias (1b 3b 8b) or a model folder.")],
    data: DataSize,
    samples: Annotated[int | None, typer.Option(help="Teacher samples per prompt (paper: 5).")] = None,
    task: Task = "general",
    teacher: Annotated[str | None, typer.Option(help="'70b' = T_s (default), '70b-it' as is, or a model folder.")] = None,
    init: Annotated[str | None, typer.Option(help="Student start: 'base' (default), 'sft', or a model folder.")] = None,
    temperature: Annotated[float, typer.Option(help="Teacher sampling temperature.")] = 1.0,
    max_new_tokens: Annotated[int | None, typer.Option(help="Cap on a teacher answer's length.")] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per generation batch.")] = 16,
    out: OutDir = None,
    max_steps: MaxSteps = None,
    epochs: Epochs = None,
    learning_rate: LearningRate = None,
    force: Retrain = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Sequence-level KD: the teacher writes K answers per prompt (resumable, cached), then the
    student is fine-tuned with cross-entropy on them."""
    _run("kdtools.seqkd", world, results, student=student, data=data, task=task, teacher=teacher,
         init=init, samples=samples, temperature=temperature, max_new_tokens=max_new_tokens,
         batch_size=batch_size, out=out, max_steps=max_steps, epochs=epochs,
         learning_rate=learning_rate, force=force)


@app.command()
def synth(
    task: Annotated[str, typer.Option(help="Domain task: translation, summarization or arc.")],
    n: Annotated[str, typer.Option(help="Synthetic set size label: 5k 10k 20k 50k 100k (the world's synth.sizes).")],
    generator: Annotated[str | None, typer.Option(help="Model writing new inputs: an alias (its full-data general SFT) or a folder (default: the world's synth.generator, 70b).")] = None,
    out: OutDir = None,
    force: Annotated[bool, typer.Option(help="Regenerate even if the pool is up to date.")] = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Synthetic task inputs: the generator continues an instruction + 10 demonstrations
    ("In: x Out: y ... In:") at T=0.8; empty, degenerate, duplicate, near-duplicate and dev/test-
    contaminated inputs are filtered; sizes are nested prefixes of one pool."""
    _run("kdtools.synth", world, results, task=task, n=n, out=out, generator=generator, force=force)


@app.command()
def annotate(
    inputs: Annotated[Path, typer.Option(help="JSONL of inputs: synthetic {'input'}, {'messages'} or {'prompt'} rows.")],
    task: Annotated[str | None, typer.Option(help="Domain task: wraps bare inputs in its prompt; '70b' then means the 70b SFT'd on it.")] = None,
    teacher: Annotated[str | None, typer.Option(help="'70b' = the task teacher (default), '70b-it' as is, or a model folder.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Teacher sampling temperature (paper: 0.6).")] = None,
    samples: Annotated[int, typer.Option(help="Answers per input.")] = 1,
    max_new_tokens: Annotated[int | None, typer.Option(help="Cap on an answer's length.")] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per generation batch.")] = 16,
    out: OutDir = None,
    force: Annotated[bool, typer.Option(help="Re-annotate even if up to date.")] = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """A teacher answers every input (sharded, resumable, deterministic); pairs in the `messages`
    schema for training (mix, two_stage, or plain SFT)."""
    _run("kdtools.annotate", world, results, inputs=inputs, teacher=teacher, task=task,
         temperature=temperature, samples=samples, max_new_tokens=max_new_tokens,
         batch_size=batch_size, out=out, force=force)


@app.command(name="eval")
def eval_(
    model: Annotated[str, typer.Option(help="A trained model folder (results/.../models/...) or an alias (1b ... 70b-it).")],
    suite: Annotated[str, typer.Option(help="general (BBH, GPQA, MMLU-Pro, IFEval, InFoBench), translation, summarization or arc.")] = "general",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N examples of each benchmark (a quick look).")] = None,
    judge_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint of the InFoBench judge (e.g. a vLLM server).")] = None,
    judge_model: Annotated[str | None, typer.Option(help="Judge model: its name at --judge-url, or a local HF model folder/alias.")] = None,
    batch_size: Annotated[int, typer.Option(help="Generation/scoring batch size.")] = 8,
    out: Annotated[Path | None, typer.Option(help="Output JSON (default: results/<world>/evals/.../<suite>.json).")] = None,
    force: Annotated[bool, typer.Option(help="Re-evaluate even if the result exists.")] = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Evaluate a model on the paper's benchmarks: lm-eval for BBH/GPQA/MMLU-Pro/IFEval, an LLM
    judge for InFoBench, COMET and chrF for translation, ROUGE-L for summarization, accuracy for
    ARC. Writes one JSON per suite (scores 0-100) plus per-example generations beside it."""
    _run("kdtools.eval", world, results, model=model, suite=suite, limit=limit, judge_url=judge_url,
         judge_model=judge_model, batch_size=batch_size, out=out, force=force)


@app.command()
def report(
    results: Annotated[
        str | None,
        typer.Option("--results", help="A results root (the world folder is then `DIR/<world>`) or a world "
                     "folder itself (one holding `evals/`); default: the global --results."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Write tables/ and figures/ under this folder (default: the world folder)."),
    ] = None,
    resamples: Annotated[
        int,
        typer.Option("--resamples", help="Bootstrap resamples of each KD-minus-SFT delta's 95% paired interval "
                     "(seeded by the world's seed); 0 turns intervals off."),
    ] = 2000,
    world: VerbWorld = None,
) -> None:
    """The paper's Tables 1-3 (markdown + CSV, printed here too) and Figures 1-5 (PNG) from the eval
    JSONs under `<results>/<world>/evals`; writes `tables/`, `figures/` and, last,
    `tables/report.json` beside it. A missing cell is '-'; every KD-minus-SFT delta gets a 95% paired
    bootstrap interval from the evals' per-item scores ('*' where it excludes 0). W&B gets tables
    and figures when configured."""
    _run("kdtools.report", world, None, results=results, out=out, resamples=resamples)


@app.command()
def publish(
    model: Annotated[Path, typer.Argument(help="A trained model folder (results/<world>/models/...): it must hold run.json.")],
    repo: Annotated[str, typer.Option(help="Hub repository to upload to: ORG/NAME (created when missing).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private (an existing one keeps its visibility).")] = False,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """Upload a trained model folder to the Hugging Face Hub with its model card (README.md:
    base model, teacher, data, method and settings, config hash, scores with intervals, receipts),
    refreshed first. Needs HF_TOKEN (a write token); HF_ENDPOINT points it at another hub."""
    _run("kdtools.publish", world, results, model=model, repo=repo, private=private)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def plan(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="Workflow targets (all_tables, demo, table1, fig5, an output file), or one verb "
                       "and its options: `gkd --student 3b --data 40k`."),
    ] = None,
    gpu: Annotated[str | None, typer.Option(help="h100, h200, a100 (paper world default h100), or cpu (toy default).")] = None,
    nodes: Annotated[int | None, typer.Option(help="Nodes available: the most one job may use, and what the total wall time is packed onto (default 8; 1 on cpu).")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="GPUs per node (default 8; 1 on cpu).")] = None,
    zero: Annotated[int, typer.Option(help="DeepSpeed ZeRO stage of multi-GPU training (kdtools launches ZeRO-3).")] = 3,
    safety: Annotated[float, typer.Option(help="Slurm time limit = estimate x this factor.")] = 1.5,
    max_runtime_h: Annotated[float, typer.Option(help="Partition time limit: jobs scale out to stay under it.")] = 48.0,
    calibration: Annotated[str | None, typer.Option(help="Throughput file from --calibrate (measured rates replace datasheet x utilisation).")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Time a few real steps of each stage here and write the throughput file.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Estimated vs actual wall time and tokens of the world's finished runs (run.json).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    out: Annotated[Path | None, typer.Option(help="Where --calibrate writes (default results/<world>/plan/calibration.json).")] = None,
    world: VerbWorld = None,
    results: VerbResults = None,
) -> None:
    """What a target will cost before anything is submitted: per rule and in total, GPU-hours,
    wall time on N nodes of G GPUs, peak memory per GPU (and whether it fits), tokens trained and
    generated, disk, and what is already done. From FLOP counts and documented utilisation, or
    from rates measured by --calibrate. The Slurm profile's resources come from the same estimate."""
    _run("kdtools.plan", world, results, targets=targets, gpu=gpu, nodes=nodes, gpus_per_node=gpus_per_node,
         zero=zero, safety=safety, max_runtime_h=max_runtime_h, calibration=calibration, as_json=as_json,
         check=check, calibrate=calibrate, out=out)


def entry() -> None:  # pragma: no cover - `python -m kdtools.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
