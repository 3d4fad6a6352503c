"""The model card every trained model folder carries: `README.md` in the Hugging Face format.

    modelcard.write(partial, world, run, name)     # staging.finish: at the end of training
    modelcard.update(folder, world)                # kdtools eval and kdtools report: scores, receipts

The card is made from files only, and remade whole each time (edits to it are overwritten):
- the run's run.json: base model, teacher, where training started, data (file, size, rows, hash),
  method and its settings, steps, cost (kdtools.costs), config hash, kdtools version and commit;
- the evals of this very model (`evals/<model>/<method>/<task>/<size>/<suite>.json` whose
  `config.model_config_hash` is the run's: a retrained model drops the old scores), each score
  with its 95% bootstrap interval over the benchmark's items (kdtools.bootstrap, from the eval's
  samples file; an Average resamples each benchmark on its own);
- `receipts.json` beside it, written by `kdtools report`: the receipts lines of the cells this
  model is in (as the distilled model, its SFT baseline or its compute-matched control).

Metadata (the YAML header, `huggingface_hub.ModelCardData`): library transformers, tags (kdtools,
method, world), base_model and datasets where they are hub ids, and the scores as model-index
eval results. Written atomically (temp file, rename) through kdtools.manifest, which scrubs the
values of secret environment variables; nothing from the environment goes in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kdtools import manifest, paths
from kdtools.world import World

CARD = "README.md"
RECEIPTS = "receipts.json"          # written by kdtools report (kdtools.receipts), read here
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
KD_METHODS = {"gkd": "GKD (on-policy distillation, generalized JSD)", "seqkd": "SeqKD (sequence-level KD)",
              "mix": "Mix (GKD on human + synthetic data)", "two_stage": "2-Stage (CE on synthetic pairs, then GKD)"}
METHODS = {"sft": "SFT (supervised fine-tuning)", "sft_long": "SFT-long (the compute-matched SFT control)",
           "synth_sft": "cross-entropy on synthetic pairs (stage 1 of 2-Stage)", **KD_METHODS}


def hub_id(ref) -> str | None:
    """`ref` when it names a hub repository (org/name, not a local path), else None."""
    ref = str(ref or "")
    return ref if HUB_ID.match(ref) and not Path(ref).exists() else None


def eval_dir(world_dir: Path, run: dict, name: str) -> Path:
    """Where `kdtools eval` writes this model's results (the size folder as the model's own)."""
    dims = run.get("dims") or {}
    return (Path(world_dir) / "evals" / paths.model_name(str(dims.get("student"))) / str(dims.get("method"))
            / str(dims.get("task")) / name)


def own_evals(world_dir: Path, run: dict, name: str) -> list[Path]:
    """Eval JSONs of exactly this run (its config hash), one per suite."""
    found = []
    for path in sorted(eval_dir(world_dir, run, name).glob("*.json")):
        doc = manifest.read_json(path) or {}
        if (doc.get("config") or {}).get("model_config_hash") == run.get("config_hash") and "metrics" in doc:
            found.append(path)
    return found


def score_rows(paths_: list[Path], seed: int, ivs=None) -> list[dict]:
    """Per metric of each eval: its value and 95% interval over the benchmark's items (the mean of
    the benchmarks' resampled scores for the general suite's Average). `ivs`: the report's
    kdtools.intervals.Intervals, whose draws are reused; otherwise a Bootstrap of the world's seed."""
    import numpy as np

    from kdtools.bootstrap import Bootstrap
    from kdtools.evalindex import read_record
    from kdtools.itemscores import ItemScores, NoItems
    from kdtools.tables import GENERAL

    scores = ivs.scores if ivs is not None else ItemScores()
    boot = ivs.boot if ivs is not None else Bootstrap(2000, seed)
    rows = []
    for path in paths_:
        rec = read_record(path)
        got = {}
        for metric, value in rec.metrics.items():
            row = {"suite": rec.suite, "metric": metric, "value": value, "lo": None, "hi": None, "n": None}
            if value is not None and boot is not None:
                try:
                    items = scores.items(rec, metric)
                    got[metric] = (items, boot.draws(items))
                    iv = boot.interval(value, got[metric][1], items.n)
                    row |= {"lo": iv.lo, "hi": iv.hi, "n": items.n}
                except NoItems:
                    pass
            rows.append(row)
        if rec.suite == "general" and all(rec.metrics.get(m) is not None for m in GENERAL):
            value = sum(rec.metrics[m] for m in GENERAL) / len(GENERAL)
            row = {"suite": rec.suite, "metric": "average", "value": value, "lo": None, "hi": None, "n": None}
            if all(m in got for m in GENERAL):
                iv = boot.interval(value, np.mean([got[m][1] for m in GENERAL], axis=0),
                                   sum(got[m][0].n for m in GENERAL))
                row |= {"lo": iv.lo, "hi": iv.hi, "n": iv.n}
            rows.append(row)
    return rows


def _fmt(v, digits=2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _table(rows: list[tuple[str, str]]) -> list[str]:
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def card_text(world: World, run: dict, name: str, scores: list[dict], receipts: list[dict]) -> str:
    """The card: YAML metadata + markdown, through huggingface_hub.ModelCard (which parses it back)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    config, dims, metrics = run.get("config") or {}, run.get("dims") or {}, run.get("metrics") or {}
    cost = run.get("cost") or {}
    method, student, task = dims.get("method"), str(dims.get("student")), dims.get("task")
    base = world.expand(world.models[student]) if student in world.models else student
    teacher = dims.get("teacher")
    teacher_weights = config.get("teacher_weights")
    title = f"{student} · {method} · {task} · {name}"
    data_source = world.expand(world.data.source) if task == "general" else f"{task} (world '{world.name}', tasks)"
    meta = ModelCardData(
        library_name="transformers", model_name=title,
        base_model=hub_id(base), datasets=[hub_id(world.data.source)] if task == "general" and hub_id(world.data.source) else None,
        tags=["kdtools", "knowledge-distillation" if method in KD_METHODS else "sft", str(method), f"world-{world.name}"],
        eval_results=[EvalResult(task_type="text-generation", dataset_type=r["metric"], dataset_name=r["metric"],
                                 metric_type=r["metric"], metric_value=round(r["value"], 2), task_name=r["suite"])
                      for r in scores if r["value"] is not None and r["metric"] != "average"] or None,
    )
    settings = {k: v for k, v in (config.get("gkd") or {}).items()}
    lines = [f"# {title}", "",
             f"Trained with kdtools (`kdtools {run.get('verb')}`, world `{world.name}`): "
             f"{METHODS.get(method, method)}. This card is written by kdtools from the run's files and rewritten "
             "by `kdtools eval` and `kdtools report`; edits are overwritten.", "", "## Training", ""]
    lines += _table([
        ("base model", f"`{base}`"),
        ("started from", f"`{config.get('weights')}` (init: {dims.get('init')})"),
        ("teacher", "none" if not teacher else f"{teacher} (`{teacher_weights or teacher}`)"),
        ("data", f"{data_source}: `{config.get('data_file')}`, size {config.get('data')} "
                 f"({_fmt(metrics.get('rows'), 0)} rows), sha256 `{str(config.get('data_sha256'))[:16]}`"),
        ("method", METHODS.get(method, str(method))),
        *([("control of", f"the {dims.get('match')} run `{config.get('match_run')}`: "
                          f"{config.get('match_steps')} extra optimizer steps, as many as it adds over SFT")]
          if method == "sft_long" else []),
        *([(f"{method} settings", ", ".join(f"{k} {v}" for k, v in settings.items()))] if settings else []),
        ("training", ", ".join(f"{k} {v}" for k, v in (config.get("train") or {}).items())),
        ("steps, tokens", f"{_fmt(metrics.get('steps'), 0)} optimizer steps, {_fmt(metrics.get('tokens_seen'), 0)} tokens"),
        ("cost", cost_text(cost)),
        ("config hash", f"`{run.get('config_hash')}` (seed {config.get('seed')})"),
        ("kdtools", f"{(run.get('versions') or {}).get('kdtools')}, commit `{run.get('git_commit')}`, "
                    f"started {run.get('started_at')}"),
    ])
    lines += ["", "## Evaluation", ""]
    if scores:
        lines += ["| suite | metric | score (0-100) | 95% CI | items |", "|---|---|---:|---|---:|"]
        lines += [f"| {r['suite']} | {r['metric']} | {_fmt(r['value'])} | {interval_text(r)} | {_fmt(r['n'], 0)} |"
                  for r in scores]
        lines += ["", "Intervals: 95% percentile bootstrap over the benchmark's items (the general Average "
                  "resamples each benchmark on its own); '-': no per-item scores."]
    else:
        lines += ["Not evaluated yet: `kdtools eval --model <this folder>`."]
    lines += ["", "## Receipts: did distillation pay?", ""]
    if receipts:
        lines += [f"- **{r['cell']}** ({r['role']}): {r['sentence']}" for r in receipts]
        lines += ["", "From `kdtools report` (tables/receipts.md): intervals are 95% paired bootstrap intervals; "
                  "the compute-matched SFT continues the SFT for as many steps as KD adds."]
    else:
        lines += ["None yet: `kdtools report` writes them once this model and its comparisons are evaluated."]
    card = ModelCard(f"---\n{meta.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
    return str(card)


def interval_text(row: dict) -> str:
    return "-" if row["lo"] is None else f"{row['lo']:.2f} to {row['hi']:.2f}"


def cost_text(cost: dict) -> str:
    if not cost.get("device_seconds"):
        return "not recorded"
    unit = "GPU-hours" if cost.get("device") == "gpu" else "CPU core-hours"
    text = (f"{cost['device_seconds'] / 3600:,.4g} {unit} ({cost.get('nodes')} node(s) x "
            f"{cost.get('devices_per_node')} {'GPU' if cost.get('device') == 'gpu' else 'core'}(s), "
            f"{cost.get('device_name')})")
    for u in cost.get("uses") or ():
        text += f"; trains on {u['rows_used']:,} rows of the {u['kind']} `{u['generation']}`"
    return text + (" (its share: tables/receipts.csv)" if cost.get("uses") else "")


def write(dest: Path, world: World, run: dict, name: str | None = None, world_dir: Path | None = None,
          ivs=None) -> Path:
    """Write dest/README.md for the run `run` (its run.json content); `name` is the folder's final
    name (dest may be its staging folder)."""
    name = name or Path(dest).name
    world_dir = Path(world_dir) if world_dir else paths.world_dir(world.results, world.name)
    scores = score_rows(own_evals(world_dir, run, name), world.seed, ivs)
    receipts = [r for r in (manifest.read_json(Path(dest) / RECEIPTS) or {}).get("receipts", [])
                if r.get("model_config_hash") == run.get("config_hash")]
    path = Path(dest) / CARD
    manifest.atomic_write_text(path, card_text(world, run, name, scores, receipts))
    return path


def refresh(folder: Path, world: World, run: dict | None = None, name: str | None = None) -> Path | None:
    """`write` (with `run`) or `update` for the end of a training or an eval: a card that cannot be
    made (say an unreadable eval beside it) is a warning, never a failed run."""
    from rich.console import Console

    try:
        return write(folder, world, run, name) if run is not None else update(folder, world)
    except Exception as exc:  # noqa: BLE001 - the model and its results are already safe
        Console(stderr=True).print(f"[yellow]model card not written[/] in {folder}: {exc}", highlight=False)
        return None


def update(folder: Path, world: World, world_dir: Path | None = None, ivs=None) -> Path | None:
    """Rewrite the card of a finished model folder (no run.json: nothing to do, None)."""
    run = manifest.read_manifest(folder)
    if run is None or not isinstance(run.get("dims"), dict):
        return None
    return write(folder, world, run, Path(folder).resolve().name, world_dir, ivs)


def write_receipts(folder: Path, rows: list[dict]) -> None:
    """The report's receipts lines of this model (read by `write`), atomically."""
    manifest.atomic_write_text(Path(folder) / RECEIPTS, json.dumps({"receipts": rows}, indent=2) + "\n")
