"""`kdtools eval`: score a model on the paper's benchmarks, one suite at a time.

    kdtools eval --model results/paper/models/3b/gkd/general/40k --suite general \
        --judge-url http://judge-node:8000               # BBH, GPQA, MMLU-Pro, IFEval, InFoBench
    kdtools eval --model 1b --suite translation          # Flores-200 as->en: COMET, chrF
    kdtools --world toy eval --model 1b --suite arc --limit 20    # the toy world, on a CPU

Setup (make_job: every check that needs no model, the judge endpoint included) -> generate with
lm-eval (HF, or vLLM when installed with CUDA; the world's chat template; greedy) -> score
(lm-eval's metrics, the InFoBench judge, chrF/COMET, ROUGE-L) -> write
results/<world>/evals/<model>/<method>/<task>/<size>/<suite>.json LAST, with the per-example
generations and scores beside it in <suite>.samples.jsonl. docs/eval.md documents the schema
and the benchmark variants; the world's `eval:` section chooses them.
"""

from __future__ import annotations

import gc
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from kdtools import manifest, paths, ranks, staging, tracking
from kdtools.errors import KdError
from kdtools.evaluation import config as evalconfig
from kdtools.evaluation import floor, results, sources
from kdtools.world import World

console = Console(stderr=True, soft_wrap=True)
BASE_DIMS = ("student", "method", "size", "task")


@dataclass(frozen=True)
class EvalJob:
    world: World
    model: str                   # the student alias ('3b') or model name; names the output folder
    weights: str                 # what is loaded: a hub id or a model folder
    method: str                  # 'base' for an alias, else the training run's method
    task: str                    # 'general' or a domain task
    size: str                    # data size label; 'none' for an untrained alias
    dims: tuple                  # further (key, value) dimensions of the run: init, teacher, ...
    model_hash: str | None       # the training run's config hash (a retrained model re-evaluates)
    suite: str
    spec: evalconfig.EvalSpec
    benchmarks: tuple            # the suite's Benchmarks
    limit: int | None
    judge: evalconfig.JudgeSpec | None   # resolved (None: the suite needs no judge)
    batch_size: int
    out: Path
    force: bool = False

    def extra_dims(self) -> dict:
        return dict(self.dims)

    def config(self) -> dict:
        """Everything that determines the scores (not --force, --out or the batch size)."""
        return {
            "world": self.world.name, "model": self.model, "weights": self.weights,
            "model_config_hash": self.model_hash, "method": self.method, "task": self.task,
            "size": self.size, **self.extra_dims(), "suite": self.suite, "limit": self.limit,
            "benchmarks": [asdict(b) for b in self.benchmarks], "backend": self.spec.backend,
            "max_length": self.spec.max_length, "chat_template": self.world.chat_template,
            "source_language": self.world.source_language, "seed": self.world.seed,
            "judge": asdict(self.judge) if self.judge else None,
            "comet_model": self.spec.comet_model if self.suite_has("translation") else None,
        }

    def suite_has(self, scoring: str) -> bool:
        return any(b.scoring == scoring for b in self.benchmarks)


def resolve_model(world: World, model: str) -> dict:
    """-> {model, weights, method, task, size, dims, model_hash, variant} for an alias or a
    trained model folder (whose run.json `dims` say what it is)."""
    if model in world.models:
        weights = world.resolve_model(model)
        if world.toy and not Path(weights).is_dir():
            raise KdError(f"model {model} ({weights}) is not built: run `kdtools --world {world.name} toy` first")
        return {"model": model, "weights": weights, "method": "base", "task": "general", "size": "none",
                "dims": (), "model_hash": None, "variant": ""}
    folder = Path(model)
    if not folder.exists():
        world.resolve_model(model)  # raises the unknown-model KdError
    if not (folder / "config.json").is_file():
        raise KdError(f"--model {model}: no config.json, so not a model folder: pass a trained "
                      "folder (results/<world>/models/...) or an alias")
    run = manifest.read_manifest(folder)
    if run is None or not isinstance(run.get("dims"), dict):
        raise KdError(f"--model {model}: no run.json with `dims` (not a finished kdtools run): train it "
                      "to completion, or evaluate the base model by its alias")
    dims = run["dims"]
    missing = [k for k in BASE_DIMS if not dims.get(k)]
    if missing:
        raise KdError(f"--model {model}: its run.json dims lack {', '.join(missing)}: retrain with this kdtools")
    size = str(dims["size"])
    leaf = folder.resolve().name
    variant = leaf[len(size) + 1:] if leaf.startswith(f"{size}+") else ""
    extra = tuple((k, v) for k, v in sorted(dims.items()) if k not in BASE_DIMS)
    return {"model": str(dims["student"]), "weights": str(folder), "method": str(dims["method"]),
            "task": str(dims["task"]), "size": size, "dims": extra,
            "model_hash": run.get("config_hash"), "variant": variant}


def floor_model(suite: str) -> dict:
    """`--model floor`: no model; every benchmark's knowing-nothing answers (kdtools.evaluation.floor),
    filed as model and method `floor`, task = the suite, size `none`."""
    return {"model": floor.NAME, "weights": f"{floor.NAME}:{','.join(floor.STRATEGIES)}", "method": floor.NAME,
            "task": suite, "size": "none", "dims": (), "model_hash": None, "variant": ""}


def resolve_judge(world: World, spec: evalconfig.EvalSpec, judge_url: str | None,
                  judge_model: str | None) -> evalconfig.JudgeSpec:
    """The InFoBench judge: --judge-url (OpenAI-compatible; checked reachable now), else
    --judge-model (a local model, or 'rules'), else the world's eval.judge."""
    from kdtools.evaluation.judge import check_endpoint

    base = spec.judge
    if judge_url:
        name = check_endpoint(judge_url, judge_model or None)
        return evalconfig.JudgeSpec("openai", judge_url, name, base.max_tokens)
    if judge_model == "rules":
        return evalconfig.JudgeSpec("rules", max_tokens=base.max_tokens)
    if judge_model:
        return evalconfig.JudgeSpec("hf", None, world.resolve_model(judge_model), base.max_tokens)
    if base.kind == "openai":
        if not base.url:
            raise KdError(
                f"InFoBench needs an LLM judge and world '{world.name}' names no eval.judge.url: pass "
                "--judge-url http://host:8000 (an OpenAI-compatible server, e.g. `vllm serve "
                f"{base.model or '<model>'}`) or --judge-model <local model folder>"
            )
        return evalconfig.JudgeSpec("openai", base.url, check_endpoint(base.url, base.model), base.max_tokens)
    if base.kind == "hf":
        if not base.model:
            raise KdError(f"{world.file}: eval.judge.kind hf needs eval.judge.model (a folder or an alias)")
        return evalconfig.JudgeSpec("hf", None, world.resolve_model(base.model), base.max_tokens)
    return base


def make_job(world: World, model: str, suite: str = "general", limit: int | None = None,
             judge_url: str | None = None, judge_model: str | None = None, batch_size: int = 8,
             out: Path | None = None, force: bool = False) -> EvalJob:
    """Every check that needs no model: suite, limit, model folder, data files, judge endpoint."""
    spec = evalconfig.load_spec(world)
    if suite not in spec.suite_names:
        raise KdError(f"unknown suite '{suite}': use one of {', '.join(spec.suite_names)} "
                      f"(world '{world.name}', eval.suites)")
    if limit is not None and limit < 1:
        raise KdError(f"--limit must be a positive number of examples per benchmark, got {limit}; omit it to evaluate all")
    if batch_size < 1:
        raise KdError(f"--batch-size must be positive, got {batch_size}")
    m = floor_model(suite) if model == floor.NAME else resolve_model(world, model)
    benchmarks = spec.suite(suite)
    for bench in benchmarks:
        sources.check_local(world, bench)
    needs_judge = any(b.scoring == "judge" for b in benchmarks)
    judge = resolve_judge(world, spec, judge_url, judge_model) if needs_judge else None
    if judge and judge.kind == "rules" and world.toy is None:
        console.print("[yellow]note:[/] the rules judge needs rows with stored `checks` (toy InFoBench)")
    out = Path(out) if out else paths.eval_file(world.results, world.name, m["model"], m["method"],
                                                  m["task"], m["size"], suite, m["variant"])
    if out.suffix != ".json":
        raise KdError(f"--out {out}: the result is a .json file (its samples go beside it)")
    staging.check_writable(out)
    return EvalJob(world, m["model"], m["weights"], m["method"], m["task"], m["size"], m["dims"],
                   m["model_hash"], suite, spec, benchmarks, limit, judge, batch_size, out, force)


def make_judge(job: EvalJob):
    from kdtools.evaluation import judge as judges

    spec = job.judge
    if spec is None:
        return None, None
    if spec.kind == "rules":
        return judges.RulesJudge(), None
    cache = judges.JudgeCache(paths.world_dir(job.world.results, job.world.name) / "cache" / "judge.jsonl")
    if spec.kind == "openai":
        return judges.OpenAIJudge(spec.url, spec.model, spec.max_tokens), cache
    return judges.HFJudge(spec.model, job.world.chat_template, job.batch_size, spec.max_tokens), cache


def run(job: EvalJob) -> dict | None:
    """Under several ranks (accelerate launch) the main process alone locks, decides and writes;
    every rank generates (lm-eval splits the data across GPUs)."""
    with ExitStack() as held:
        if ranks.is_main():
            held.enter_context(staging.locked(job.out))
        return ranks.from_main(lambda: up_to_date(job)) or evaluate(job)


def up_to_date(job: EvalJob) -> dict | None:
    done = results.read(job.out)
    if done and not job.force and done.get("config_hash") == manifest.config_hash(job.config()):
        console.print(f"[green]up to date:[/] {job.out} (--force to re-evaluate)")
        results.print_table(done, console)
        return done
    return None


def evaluate(job: EvalJob) -> dict | None:
    started = time.time()
    from kdtools.evaluation import comet_env, lmeval, scoring

    console.print(f"[bold]eval[/] {job.model} ({job.weights}) suite {job.suite} "
                  f"({', '.join(b.name for b in job.benchmarks)}) -> {job.out}")
    data_files = {b.name: sources.resolve(job.world, b) for b in job.benchmarks if b.template}
    comet_setup = None
    if job.suite_has("translation"):
        comet_setup = scoring.CometSetup(comet_env.comet_python(), job.spec.comet_model, job.spec.comet_batch_size)
    judge, cache = make_judge(job)

    benches = list(job.benchmarks)

    def generate(lm) -> dict:
        return lmeval.evaluate(lm, benches, data_files, job.limit, job.world.seed, job.world.source_language)

    def score(bench, out) -> tuple[dict, dict, dict]:
        got, info, absent = scoring.score(bench, out, judge, cache, comet_setup)
        return got, {"task": bench.task, "source": _source(bench), "metrics": sorted(got),
                     "lm_eval_metric": bench.metric, "n": len(out.samples), "subtasks": len(out.subtasks),
                     "num_fewshot": _fewshot(out.n_shot), **info}, absent

    if job.model == floor.NAME:
        if not ranks.is_main():
            return None  # no model to share out: the main process does it all
        backend, scored = floor.NAME, floor.evaluate(benches, generate, score)
    else:
        backend = lmeval.pick_backend(job.spec.backend)
        lm = lmeval.build_lm(job.weights, backend, job.batch_size, job.spec.max_length,
                             job.world.chat_template, job.world.seed)
        outputs = generate(lm)
        del lm  # free the student before a local judge or COMET loads
        gc.collect()
        _empty_cuda_cache()
        if not ranks.is_main():
            return None  # lm-eval gathers the generations on the main process, which scores and writes
        scored = {b.name: (*score(b, outputs[b.name]), outputs[b.name].samples) for b in benches}

    metrics, benchmarks, missing, samples = {}, {}, {}, []
    for bench in benches:
        got, info, absent, rows = scored[bench.name]
        metrics.update(got)
        missing.update(absent)
        benchmarks[bench.name] = info
        samples += rows
    judge_info = judge.describe() if judge is not None else None
    payload = results.build_payload(job, metrics, benchmarks, missing, backend, started, judge_info)
    results.validate(payload)
    results.write(job.out, payload, samples)
    trained = manifest.read_manifest(Path(job.weights)) if job.method not in ("base", floor.NAME) else None
    dims = {"student": job.model, "method": job.method, "task": job.task, "size": job.size, **job.extra_dims()}
    tracking.log_eval(job.world, trained, dims, job.suite, metrics,
                      tracking.run_id(job.out, payload["config_hash"]), job.out)
    if trained is not None:   # a trained model's card now shows these scores (kdtools.modelcard)
        from kdtools import modelcard

        modelcard.refresh(Path(job.weights), job.world)
    results.print_table(payload, Console())
    console.print(f"[green]done[/] in {payload['wall_time_s']:.0f}s -> {job.out}")
    return payload


def _source(bench) -> str:
    if not bench.template:
        return f"lm-eval {bench.task} ({bench.metric})"
    data = bench.data.path or f"{bench.data.hub}:{bench.data.split}"
    return f"{bench.task} over {Path(data).name if bench.data.path else data}"


def _fewshot(n_shot: dict) -> int | None:
    values = {v for v in n_shot.values() if v is not None}
    return values.pop() if len(values) == 1 else None


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
