"""From one benchmark's lm-eval output to the metrics the paper reports (0-100).

    metrics, info, missing = score(bench, output, judge=..., comet=...)

lm-eval-scored benchmarks (BBH, GPQA, MMLU-Pro, IFEval, ARC and the toy variants) take lm-eval's
aggregate of the configured metric. The others are scored here from the generations: InFoBench
by a judge (DRFR), translation by corpus chrF and COMET, summarization by ROUGE-L. Per-example
scores are written into each sample's `scores`, so the samples file explains every number.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from kdtools.errors import KdError
from kdtools.evaluation import comet_env, metrics
from kdtools.evaluation.config import Benchmark
from kdtools.evaluation.lmeval import BenchOutput

console = Console(stderr=True, soft_wrap=True)


@dataclass
class CometSetup:
    python: object | None        # Path of the COMET env's python, or None (not installed)
    model: str
    batch_size: int


def score(bench: Benchmark, out: BenchOutput, judge=None, judge_cache=None,
          comet_setup: CometSetup | None = None) -> tuple[dict, dict, dict]:
    """-> (metrics {name: 0-100 or None}, info {extra facts}, missing {metric: why})."""
    if bench.scoring == "judge":
        return score_infobench(bench, out, judge, judge_cache)
    if bench.scoring == "translation":
        return score_translation(out, comet_setup)
    if bench.scoring == "summarization":
        hyps, refs = [s["response"] for s in out.samples], [s["target"] for s in out.samples]
        for s, v in zip(out.samples, metrics.rouge_l_scores(hyps, refs), strict=True):
            s["scores"]["rougeL"] = round(100 * v, 2)
        return {"rougeL": metrics.rouge_l(hyps, refs)}, {}, {}
    value = metrics.percent(out.metric)
    missing = {} if value is not None else {bench.metric_key: f"lm-eval reported no '{bench.metric}' for {bench.task}"}
    info = {"stderr": metrics.percent(out.stderr)} if out.stderr is not None else {}
    return {bench.metric_key: value}, info, missing


def score_infobench(bench: Benchmark, out: BenchOutput, judge, cache) -> tuple[dict, dict, dict]:
    from kdtools.evaluation.judge import judge_rows

    rows = [s["doc"] for s in out.samples]
    responses = [s["response"] for s in out.samples]
    if judge is None:
        raise KdError("InFoBench needs a judge: pass --judge-url or --judge-model")
    total = sum(len(r["decomposed_questions"]) for r in rows)
    console.print(f"[bold]judge[/] {judge.describe()}: {len(rows)} responses, {total} requirements")
    with _progress("judging InFoBench requirements", total) as advance:
        judgments, info = judge_rows(rows, responses, judge, cache, progress=advance)
    for s, j in zip(out.samples, judgments, strict=True):
        s["scores"]["requirements"] = j
        s["scores"]["drfr"] = metrics.drfr([j])
    return {bench.metric_key: metrics.drfr(judgments)}, {"requirements": info["questions"],
                                                         "judge_unparsed": info["unparsed"],
                                                         "judge_cache_hits": info["cache_hits"]}, {}


def score_translation(out: BenchOutput, setup: CometSetup | None) -> tuple[dict, dict, dict]:
    hyps = [s["response"].strip() for s in out.samples]
    refs = [s["target"] for s in out.samples]
    srcs = [s["doc"]["sentence_asm_Beng"] for s in out.samples]
    for s, h, r in zip(out.samples, hyps, refs, strict=True):
        s["scores"]["chrf"] = metrics.sentence_chrf(h, r)
    result = {"chrf": metrics.chrf(hyps, refs), "comet": None}
    info, missing = {}, {}
    if setup is None or setup.python is None:
        missing["comet"] = comet_env.HOW_TO_ENABLE
        console.print(f"[yellow]{comet_env.HOW_TO_ENABLE}[/]")
        return result, info, missing
    try:
        scored = comet_env.score(setup.python, setup.model, srcs, hyps, refs, setup.batch_size)
    except KdError as exc:  # report chrF anyway; say why COMET is absent
        missing["comet"] = str(exc)
        console.print(f"[red]{exc}[/]")
        return result, info, missing
    for s, v in zip(out.samples, scored["scores"], strict=True):
        s["scores"]["comet"] = round(100 * v, 2)
    result["comet"] = metrics.percent(scored["system_score"])
    info = {"comet_model": setup.model, "comet_version": scored.get("comet_version")}
    return result, info, missing


class _progress:
    """A rich progress bar as a context manager yielding advance(n)."""

    def __init__(self, label: str, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        self.task = self.bar.add_task(label, total=total)

    def __enter__(self):
        self.bar.start()
        return lambda n: self.bar.advance(self.task, n)

    def __exit__(self, *exc):
        self.bar.stop()
