"""`kdtools plan`: what a target will cost on the cluster before anything is submitted.

    kdtools plan all_tables                          # the paper's grid, per rule and in total
    kdtools plan table1 table3 fig5                  # several targets: also what reuse saves
    kdtools plan gkd --student 3b --data 40k         # one verb's job
    kdtools plan all_tables --gpu h200 --nodes 4     # another GPU, 4 nodes of 8
    kdtools plan all_tables --json                   # machine-readable
    kdtools --world smoke plan --calibrate           # time real steps here -> calibration.json
    kdtools plan all_tables --calibration cal.json   # estimates from measured rates
    kdtools --world smoke plan --check               # estimate vs actual for finished runs

The jobs of a workflow target come from the workflow itself (a forced Snakemake dry run of the
target, so the grid stays expanded in workflow/rules/common.smk alone); a job is done when its
outputs exist. Each job is costed by kdtools.estimate, the same function that sizes the Slurm
profile's resources, from the cost model in kdtools.costmodel (formulas in the README).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdtools import paths
from kdtools.errors import KdError
from kdtools.estimate import estimate, plan_settings
from kdtools.manifest import read_manifest
from kdtools.workload import Estimate, Settings
from kdtools.world import World, config_dir, repo_root

console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)  # tables unsqueezed in logs
VERBS = ("sft", "gkd", "seqkd", "synth", "annotate", "eval")


@dataclass(frozen=True)
class PlanJob:
    world: World
    targets: tuple[str, ...]       # workflow targets (rules or files), or a verb and its options
    settings: Settings
    cluster_nodes: int             # the nodes the whole target is packed onto for its wall time
    as_json: bool = False
    check: bool = False
    calibrate: bool = False
    out: Path | None = None


def make_job(world: World, targets: list[str] | None = None, gpu: str | None = None, nodes: int | None = None,
             gpus_per_node: int | None = None, zero: int = 3, safety: float = 1.5,
             max_runtime_h: float = 48.0, calibration: str | None = None, as_json: bool = False,
             check: bool = False, calibrate: bool = False, out: Path | None = None) -> PlanJob:
    """Validate everything before any dry run or measurement. Toy worlds default to the CPU."""
    gpu = gpu or ("cpu" if world.toy else "h100")
    gpus_per_node = gpus_per_node or (1 if gpu == "cpu" else 8)
    nodes = nodes or (1 if gpu == "cpu" else 8)
    settings = plan_settings(gpu, calibration, gpus_per_node=gpus_per_node, zero=zero, safety=safety,
                             max_runtime_h=max_runtime_h, max_nodes=nodes)
    targets = tuple(targets or ())
    if not (targets or check or calibrate):
        raise KdError("name what to plan: a workflow target (all_tables, demo, table1, ...), a verb with its "
                      "options (kdtools plan gkd --student 3b --data 40k), --check or --calibrate")
    if targets and targets[0] in VERBS:
        verb_job(world, targets)  # a bad option fails here, before anything runs
    else:
        for target in targets:
            if target.startswith("-"):
                raise KdError(f"unknown option {target} for plan: see `kdtools plan --help`")
    return PlanJob(world, targets, settings, nodes, as_json, check, calibrate, Path(out) if out else None)


# ---------------------------------------------------------------------------------------------
# One verb's job: `kdtools plan gkd --student 3b --data 40k` -> (rule, wildcards, overrides).
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise KdError(f"kdtools plan {self.prog.split()[-1]}: {message} (the verb's own options, "
                      f"see `kdtools {self.prog.split()[-1]} --help`)")


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"kdtools plan {verb}", add_help=False)
    if verb in ("sft", "eval"):
        p.add_argument("--model", required=True)
    if verb in ("gkd", "seqkd"):
        p.add_argument("--student", required=True)
    if verb in ("sft", "gkd", "seqkd"):
        p.add_argument("--data", required=True)
        p.add_argument("--task", default="general")
        p.add_argument("--init")
        p.add_argument("--teacher")
        p.add_argument("--epochs", type=float)
        p.add_argument("--max-steps", type=int)
        p.add_argument("--max-new-tokens", type=int)
    if verb == "gkd":
        p.add_argument("--lmbda", type=float)
        p.add_argument("--method", default="gkd", choices=("gkd", "mix", "two_stage"))
        p.add_argument("--synthetic")
    if verb == "seqkd":
        p.add_argument("--samples", type=int)
    if verb in ("synth", "annotate"):
        p.add_argument("--task", required=True)
        p.add_argument("--n", help="synthetic size label")
        p.add_argument("--inputs", help="annotate: a synth file <label>.jsonl")
        p.add_argument("--teacher")
    if verb == "eval":
        p.add_argument("--suite", default="general")
    return p


def verb_job(world: World, argv: tuple[str, ...]) -> tuple[str, dict, dict]:
    """A verb and its options -> (rule, wildcards, overrides), as the workflow would run it."""
    from kdtools.tasks import canonical_task

    verb, rest = argv[0], list(argv[1:])
    a = _verb_parser(verb).parse_args(rest)
    o = {k: v for k, v in vars(a).items() if v is not None and k in
         ("epochs", "max_steps", "max_new_tokens", "lmbda", "samples", "teacher")}
    task = canonical_task(a.task) if getattr(a, "task", None) else "general"
    for alias in (getattr(a, "model", None), getattr(a, "student", None), getattr(a, "teacher", None)):
        if alias:
            world.resolve_model(alias)
    if getattr(a, "data", None):
        world.size_rows(a.data)
    if verb == "sft":
        return "sft", {"model": a.model, "task": task, "size": a.data}, o
    if verb == "seqkd":
        return "seqkd", {"student": a.student, "task": task, "size": a.data}, o
    if verb == "gkd":
        if a.method != "gkd":
            if not a.synthetic:
                raise KdError(f"--method {a.method} needs --synthetic SIZE (one of {', '.join(world.synth.get('sizes', {}))})")
            return "gkd_synthetic", {"student": a.student, "task": task, "label": a.synthetic, "method": a.method}, o
        parts = [f"init-{a.init}"] if a.init and a.init != "sft" else []
        parts += [f"teacher-{a.teacher}"] if a.teacher and a.teacher != "70b" else []
        wc = {"student": a.student, "task": task, "size": a.data}
        return ("gkd_variant", {**wc, "variant": "+".join(parts)}, o) if parts else ("gkd", wc, o)
    if verb in ("synth", "annotate"):
        label = a.n or (Path(a.inputs).stem if a.inputs else None)
        sizes = world.synth.get("sizes", {})
        label = label or (max(sizes, key=sizes.get) if sizes else None)
        if label not in sizes:
            raise KdError(f"synthetic size '{label}' is not in synth.sizes of {world.file}: use one of {', '.join(sizes)}")
        wc = {"task": task, "label": label}
        return verb, ({**wc, "n": sizes[label]} if verb == "synth" else wc), o
    return "eval", {"model": a.model, "method": "base", "task": "general", "leaf": "-", "suite": a.suite}, o


# ---------------------------------------------------------------------------------------------
# A workflow target's jobs, from the workflow's own DAG.
@dataclass
class DagJob:
    rule: str
    wildcards: dict
    inputs: list[str]
    outputs: list[str]

    @property
    def done(self) -> bool:
        return bool(self.outputs) and all(Path(f).exists() for f in self.outputs)


def _snakemake() -> str:
    found = Path(sys.executable).with_name("snakemake")
    return str(found) if found.exists() else (shutil.which("snakemake") or "snakemake")


def _world_arg(world: World) -> str:
    builtin = config_dir() / f"{world.name}.yaml"
    return world.name if Path(world.file).resolve() == builtin.resolve() else str(Path(world.file).resolve())


def dry_run(world: World, targets: tuple[str, ...]) -> list[DagJob]:
    """Every job the targets need (forced: done ones too), parsed from Snakemake's dry run."""
    cmd = [_snakemake(), *targets, "-n", "-F", "--cores", "1", "--config", f"world={_world_arg(world)}",
           f"results={Path(world.results).resolve()}"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=repo_root(), capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        first = next((ln.strip() for ln in text.splitlines()
                      if re.search(r"Error|error|not found|unknown", ln)), text.strip().splitlines()[-1:])
        raise KdError(f"the workflow cannot build {' '.join(targets)} ({str(first)[:200]}): name a rule of the "
                      "Snakefile (all_tables, demo, report, table1, table2, table3, fig1, fig3, fig5) or an output file")
    return parse_dry_run(proc.stdout)


def parse_dry_run(text: str) -> list[DagJob]:
    jobs: list[DagJob] = []
    for block in re.split(r"^(?:local)?rule ", text, flags=re.M)[1:]:
        lines = block.splitlines()
        fields = {}
        for line in lines[1:]:
            m = re.match(r"^    (\w+): (.*)$", line)
            if not m:
                if line and not line.startswith(" "):
                    break
                continue
            fields[m[1]] = m[2]
        items = {key: [x for x in fields.get(key, "").split(", ") if x] for key in ("wildcards", "input", "output")}
        wildcards = dict(kv.split("=", 1) for kv in items["wildcards"])
        jobs.append(DagJob(lines[0].rstrip(":"), wildcards, items["input"], items["output"]))
    return jobs


def closure(jobs: list[DagJob], roots: list[DagJob]) -> list[DagJob]:
    """The roots and every job producing an input they need, transitively."""
    producer = {out: j for j in jobs for out in j.outputs}
    seen, todo = {}, list(roots)
    while todo:
        job = todo.pop()
        if id(job) in seen:
            continue
        seen[id(job)] = job
        todo += [producer[f] for f in job.inputs if f in producer]
    return list(seen.values())


# ---------------------------------------------------------------------------------------------
def summarize(ests: list[tuple[Estimate, bool]], cluster_gpus: int) -> dict:
    """Per-rule and total numbers of (estimate, done) pairs; GPU-hours and wall of what is to run."""
    rules: dict[str, dict] = {}
    for est, done in ests:
        r = rules.setdefault(est.rule, dict(jobs=0, done=0, gpu_hours=0.0, gpu_hours_all=0.0, longest_h=0.0,
                                            peak_gb=0.0, fits=True, trained_tokens=0.0, generated_tokens=0.0,
                                            disk_gb=0.0, over_limit=0))
        r["jobs"] += 1
        r["done"] += done
        r["gpu_hours_all"] += est.gpu_hours
        r["gpu_hours"] += 0 if done else est.gpu_hours
        r["longest_h"] = max(r["longest_h"], est.wall_s / 3600)
        r["peak_gb"] = max(r["peak_gb"], est.peak_bytes / 1e9)
        r["fits"] = r["fits"] and est.fits
        r["trained_tokens"] += est.trained_tokens
        r["generated_tokens"] += est.generated_tokens
        r["disk_gb"] += est.disk_bytes / 1e9
        r["over_limit"] += est.over_limit
    keys = ("jobs", "done", "gpu_hours", "gpu_hours_all", "trained_tokens", "generated_tokens", "disk_gb", "over_limit")
    total = {k: sum(r[k] for r in rules.values()) for k in keys}
    total["longest_h"] = max((r["longest_h"] for r in rules.values()), default=0.0)
    total["peak_gb"] = max((r["peak_gb"] for r in rules.values()), default=0.0)
    total["fits"] = all(r["fits"] for r in rules.values())
    # packed onto the cluster: no faster than the longest job, nor than the GPU-hours allow
    total["wall_h"] = max(total["gpu_hours"] / max(cluster_gpus, 1), total["longest_h"] if total["gpu_hours"] else 0)
    # the optional teacher top-k cache: off-policy teacher passes become reads, each cache written once
    writes = {e.cache_key: (e.cache_write_gpu_s, e.cache_bytes) for e, done in ests if e.cache_key and not done}
    saved = sum(e.cache_saving_gpu_s for e, done in ests if e.cache_key and not done)
    total["teacher_cache"] = {"gpu_hours_saved": (saved - sum(w for w, _ in writes.values())) / 3600,
                              "caches": len(writes), "disk_gb": sum(b for _, b in writes.values()) / 1e9}
    return {"rules": rules, "total": total}


def _fmt_tokens(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def _print(job: PlanJob, summary: dict, title: str) -> None:
    s = job.settings
    rates = f"calibrated on {s.calibration.get('device')}" if s.calibration else \
        f"{s.gpu} datasheet x utilisation (train MFU {s.device.train_mfu:.0%})"
    table = Table(title=title, title_justify="left")
    for col in ("rule", "jobs", "done", "GPU-h to run", "GPU-h all", "longest job", "peak GB/GPU", "fits",
                "trained tok", "generated tok", "disk GB"):
        table.add_column(col, justify="left" if col == "rule" else "right")
    rows = list(summary["rules"].items()) + [("total", summary["total"])]
    for name, r in rows:
        table.add_row(name, str(r["jobs"]), str(r["done"]), f"{r['gpu_hours']:,.1f}", f"{r['gpu_hours_all']:,.1f}",
                      f"{r['longest_h']:.1f} h", f"{r['peak_gb']:.1f}", "yes" if r["fits"] else "NO",
                      _fmt_tokens(r["trained_tokens"]), _fmt_tokens(r["generated_tokens"]), f"{r['disk_gb']:,.1f}",
                      end_section=name == rows[-2][0])
    console.print(table)
    t = summary["total"]
    console.print(f"rates: {rates}; memory: {s.device.memory_bytes / 1e9:.0f} GB per {s.gpu}, ZeRO-{s.zero} "
                  f"when sharded; Slurm time limit = estimate x {s.safety:g}")
    console.print(f"wall time on {job.cluster_nodes} node(s) x {s.gpus_per_node} {s.gpu}: "
                  f"{t['wall_h']:,.1f} h for what is still to run ({t['jobs'] - t['done']} of {t['jobs']} jobs)")
    cache = t["teacher_cache"]
    if cache["caches"]:
        console.print(f"optional teacher top-k cache (k={s.teacher_cache_k}, off by default): saves "
                      f"{cache['gpu_hours_saved']:,.1f} GPU-h for {cache['disk_gb']:,.1f} GB in {cache['caches']} caches")
    if t["over_limit"]:
        console.print(f"[yellow]{t['over_limit']} job(s) exceed {s.max_runtime_h:g} h even on the largest "
                      f"allocation: run them resumably or raise --max-runtime-h[/]")


def _estimates(job: PlanJob, dag: list[DagJob]) -> list[tuple[Estimate, bool]]:
    """Every job that makes an output (target rules like all_tables only gather inputs)."""
    return [(estimate(job.world, d.rule, d.wildcards, job.settings), d.done) for d in dag if d.outputs]


def plan_targets(job: PlanJob) -> dict:
    dag = dry_run(job.world, job.targets)
    gpus = job.cluster_nodes * job.settings.gpus_per_node
    ests = _estimates(job, dag)
    result = summarize(ests, gpus)
    per_target = {}
    if len(job.targets) > 1:
        for target in job.targets:
            roots = [d for d in dag if d.rule == target and not d.wildcards] or \
                    [d for d in dag if target in d.outputs or str(Path(target).resolve()) in d.outputs]
            part = summarize(_estimates(job, closure(dag, roots)), gpus)["total"]
            per_target[target] = part
        standalone = sum(p["gpu_hours_all"] for p in per_target.values())
        result["targets"] = per_target
        result["reuse"] = {"gpu_hours_standalone_sum": standalone,
                           "gpu_hours_union": result["total"]["gpu_hours_all"],
                           "gpu_hours_saved": standalone - result["total"]["gpu_hours_all"],
                           "disk_gb_saved": sum(p["disk_gb"] for p in per_target.values()) - result["total"]["disk_gb"]}
    result["jobs"] = [{"rule": e.rule, "job": e.job, "done": done, "gpus": e.gpus, "nodes": e.nodes,
                       "wall_h": e.wall_s / 3600, "gpu_hours": e.gpu_hours, "peak_gb": e.peak_bytes / 1e9,
                       "fits": e.fits, "trained_tokens": e.trained_tokens, "generated_tokens": e.generated_tokens,
                       "disk_gb": e.disk_bytes / 1e9, "notes": e.notes} for e, done in ests]
    if not job.as_json:
        _print(job, result, f"kdtools plan {' '.join(job.targets)} (world {job.world.name})")
        if per_target:
            t = Table(title="per target, each as if alone (models shared between targets counted in each)",
                      title_justify="left")
            for col in ("target", "jobs", "GPU-h", "disk GB"):
                t.add_column(col, justify="left" if col == "target" else "right")
            for name, p in per_target.items():
                t.add_row(name, str(p["jobs"]), f"{p['gpu_hours_all']:,.1f}", f"{p['disk_gb']:,.1f}")
            console.print(t)
            r = result["reuse"]
            console.print(f"reusing models across targets saves {r['gpu_hours_saved']:,.1f} GPU-h "
                          f"({r['gpu_hours_standalone_sum']:,.1f} alone -> {r['gpu_hours_union']:,.1f} together) "
                          f"and {r['disk_gb_saved']:,.1f} GB")
    return result


def plan_verb(job: PlanJob) -> dict:
    rule, wc, overrides = verb_job(job.world, job.targets)
    est = estimate(job.world, rule, wc, job.settings, overrides)
    outputs = _outputs(job.world, rule, wc)
    done = bool(outputs) and all(p.exists() for p in outputs)
    result = summarize([(est, done)], est.gpus or 1)
    result["jobs"] = [{"rule": rule, "job": est.job, "gpus": est.gpus, "nodes": est.nodes, "wall_h": est.wall_s / 3600,
                       "gpu_hours": est.gpu_hours, "peak_gb": est.peak_bytes / 1e9, "fits": est.fits, "done": done,
                       "notes": est.notes}]
    if not job.as_json:
        _print(job, result, f"kdtools plan {' '.join(job.targets)} (world {job.world.name})")
        console.print(f"allocation: {est.nodes} node(s), {est.gpus} GPU(s) in all; wall {est.wall_s / 3600:,.2f} h"
                      + (f"; {'; '.join(est.notes)}" if est.notes else ""))
    return result


def _outputs(world: World, rule: str, wc: dict) -> list[Path]:
    r, w = world.results, world.name
    if rule == "sft":
        return [paths.model_dir(r, w, wc["model"], "sft", wc["task"], wc["size"]) / paths.MANIFEST]
    if rule in ("gkd", "gkd_variant", "seqkd"):
        method = "seqkd" if rule == "seqkd" else "gkd"
        return [paths.model_dir(r, w, wc["student"], method, wc["task"], wc["size"], wc.get("variant", ""))
                / paths.MANIFEST]
    if rule == "gkd_synthetic":
        return [paths.model_dir(r, w, wc["student"], wc["method"], wc["task"], "full", f"synthetic-{wc['label']}")
                / paths.MANIFEST]
    if rule == "sft_long":
        return [paths.model_dir(r, w, wc["model"], "sft_long", wc["task"], wc["size"], f"match-{wc['match']}")
                / paths.MANIFEST]
    return []


# ---------------------------------------------------------------------------------------------
def _finished(world: World) -> list[tuple[Path, dict]]:
    root = paths.world_dir(world.results, world.name) / "models"
    found = []
    for path in sorted(root.glob(f"**/{paths.MANIFEST}")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # a .partial staging folder
        payload = read_manifest(path.parent)
        if payload and "metrics" in payload:
            found.append((path.parent, payload))
    return found


def _as_job(payload: dict) -> tuple[str, dict, dict]:
    """A finished run's manifest -> (rule, wildcards, overrides) that reproduce its estimate."""
    c = payload["config"]
    train = c.get("train", {})
    o = {"epochs": train.get("epochs"), "max_steps": train.get("max_steps")}
    o.update({k: v for k, v in (c.get("gkd") or {}).items() if k in ("lmbda", "max_new_tokens")})
    if c.get("teacher"):
        o["teacher"] = c["teacher"]
    if c.get("samples"):
        o["samples"] = c["samples"]
    method = c["method"]
    if method == "sft":
        return "sft", {"model": c["model"], "task": c["task"], "size": c["data"]}, o
    if method == "sft_long":   # its steps are the KD run's added ones: the rule's `match` carries them
        match = c["match"] + (f"-{c['synthetic']}" if c.get("synthetic") else "")
        return "sft_long", {"model": c["model"], "task": c["task"], "size": c["data"], "match": match}, o
    if method == "seqkd":
        return "seqkd", {"student": c["model"], "task": c["task"], "size": c["data"]}, o
    if method in ("mix", "two_stage"):
        return "gkd_synthetic", {"student": c["student"], "task": c["task"], "label": c["synthetic"],
                                 "method": method}, o
    return "gkd", {"student": c["student"], "task": c["task"], "size": c["data"]}, o


def check(job: PlanJob) -> dict:
    """Estimated vs actual wall time and tokens of every finished training run of the world."""
    rows = []
    for folder, payload in _finished(job.world):
        rule, wc, o = _as_job(payload)
        est = estimate(job.world, rule, wc, job.settings, o)
        actual_tokens = payload["metrics"].get("tokens_seen")
        row = {"run": str(folder.relative_to(paths.world_dir(job.world.results, job.world.name))),
               "rule": rule, "estimated_wall_s": est.wall_s, "actual_wall_s": payload.get("wall_time_s"),
               "estimated_tokens": est.trained_tokens, "actual_tokens": actual_tokens,
               "steps": payload["metrics"].get("steps")}
        row.update(_onpolicy_check(est, payload["metrics"]))
        rows.append(row)
    if not job.as_json:
        table = Table(title=f"estimate vs actual, finished runs of world {job.world.name}", title_justify="left")
        for col in ("run", "steps", "wall est", "wall actual", "actual/est", "tokens est", "tokens actual", "actual/est "):
            table.add_column(col, justify="left" if col == "run" else "right")
        for r in rows:
            ratio_w = r["actual_wall_s"] / r["estimated_wall_s"] if r["estimated_wall_s"] else float("nan")
            ratio_t = (r["actual_tokens"] or 0) / r["estimated_tokens"] if r["estimated_tokens"] else float("nan")
            table.add_row(r["run"], str(r["steps"]), f"{r['estimated_wall_s']:.1f} s", f"{r['actual_wall_s']:.1f} s",
                          f"{ratio_w:.2f}", _fmt_tokens(r["estimated_tokens"]), _fmt_tokens(r["actual_tokens"] or 0),
                          f"{ratio_t:.2f}")
        console.print(table)
        if not rows:
            console.print(f"no finished training runs under {paths.world_dir(job.world.results, job.world.name)}/models")
        sampled = [r for r in rows if r.get("actual_onpolicy_s") is not None]
        if sampled:
            table = Table(title="GKD on-policy sampling, estimate vs actual (run.json onpolicy_sampling_s)",
                          title_justify="left")
            for col in ("run", "on-policy steps est", "actual", "sampling est", "actual", "per step est", "actual",
                        "actual/est"):
                table.add_column(col, justify="left" if col == "run" else "right")
            for r in sampled:
                per_est, per_actual = r["estimated_onpolicy_step_s"], r["actual_onpolicy_step_s"]
                table.add_row(r["run"], f"{r['estimated_onpolicy_steps']:.1f}", str(r["actual_onpolicy_steps"]),
                              f"{r['estimated_onpolicy_s']:.1f} s", f"{r['actual_onpolicy_s']:.1f} s",
                              f"{per_est:.2f} s", "-" if per_actual is None else f"{per_actual:.2f} s",
                              "-" if per_actual is None or not per_est else f"{per_actual / per_est:.2f}")
            console.print(table)
    return {"check": rows}


def _onpolicy_check(est: Estimate, metrics: dict) -> dict:
    """A GKD run's on-policy sampling, estimated and as recorded: totals, and per sampling
    optimizer step (the sampler's rate, whatever lambda's coin gave)."""
    if "onpolicy_steps" not in metrics:
        return {}
    per_est = est.onpolicy_s / est.onpolicy_steps if est.onpolicy_steps else 0.0
    actual, steps = metrics.get("onpolicy_sampling_s"), metrics["onpolicy_steps"]
    return {"estimated_onpolicy_s": est.onpolicy_s, "estimated_onpolicy_steps": est.onpolicy_steps,
            "estimated_onpolicy_step_s": per_est, "actual_onpolicy_s": actual, "actual_onpolicy_steps": steps,
            "actual_onpolicy_step_s": actual / steps if actual is not None and steps else None}


def run(job: PlanJob) -> dict:
    result: dict = {"world": job.world.name, "gpu": job.settings.gpu,
                    "calibrated": bool(job.settings.calibration)}
    if job.calibrate:
        from kdtools.calibrate import calibrate

        out, payload = calibrate(job.world, job.out)
        result["calibration"] = {"file": str(out), **payload}
        if not job.as_json:
            console.print(f"calibration ({payload['device']}, startup {payload['startup_s']:.1f} s) -> {out}")
            for alias, m in payload["models"].items():
                console.print(f"  {alias}: train {m['train_flops'] / 1e9:.2f} GFLOP/s, forward "
                              f"{m['forward_flops'] / 1e9:.2f} GFLOP/s, decode step {m['decode_step_s'] * 1e3:.1f} ms"
                              + "".join(f", on-policy step ({kind} cache) {sec * 1e3:.1f} ms"
                                        for kind, sec in m.get("onpolicy_step_s", {}).items()))
        if job.targets or job.check:  # later parts of this call use the rates just measured
            job = PlanJob(job.world, job.targets, plan_settings(job.settings.gpu, str(out),
                          **{k: getattr(job.settings, k) for k in ("gpus_per_node", "zero", "safety",
                                                                      "max_runtime_h", "max_nodes")}),
                          job.cluster_nodes, job.as_json, job.check, False, job.out)
    if job.targets:
        result.update(plan_verb(job) if job.targets[0] in VERBS else plan_targets(job))
    if job.check:
        result.update(check(job))
    if job.as_json:
        print(json.dumps(result, indent=2, default=str))
    return result
