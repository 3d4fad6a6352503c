"""Benchmark rows for the kd_* templates: a local JSONL as is, or a hub dataset saved once as one.

The toy world's files are already local (<results>/<world>/world/benchmarks|tasks/...). The paper
world's domain test sets and InFoBench come from the hub and are written, in the same schemas as
the toy files, to <results>/<world>/data/eval/<benchmark>/<tag>.jsonl on first use:

    Flores-200 as->en   openlanguagedata/flores_plus, asm_Beng + eng_Latn devtest zipped by id,
                        rows 500..1011 (the paper's 512-row test half; the first 500 are dev)
    DialogSum           knkarthick/dialogsum test (1,500 rows)
    ARC-Challenge       allenai/ai2_arc ARC-Challenge test (answer keys as letters A-E)
    InFoBench           kqsong/InFoBench train (500 instructions, 2,250 requirements)

Later runs (and compute nodes without hub access) read the cached file.
"""

from __future__ import annotations

import json
from pathlib import Path

from kdtools import manifest, paths
from kdtools.errors import KdError
from kdtools.evaluation.config import Benchmark, DataSource
from kdtools.evaluation.metrics import LETTERS


def cache_file(world, bench: Benchmark) -> Path:
    return paths.data_dir(world.results, world.name, "eval") / bench.name / f"{bench.data.tag()}.jsonl"


def check_local(world, bench: Benchmark) -> None:
    """make_job's check: a local data file must exist (hub data is fetched in run())."""
    src = bench.data
    if src is not None and src.path is not None and not Path(src.path).is_file():
        hint = f"run `kdtools --world {world.name} toy` first" if world.toy else "fix eval.suites in the world file"
        raise KdError(f"benchmark {bench.name}: data file {src.path} does not exist: {hint}")


def resolve(world, bench: Benchmark) -> Path:
    """The local JSONL of a template benchmark (downloading a hub dataset the first time)."""
    src = bench.data
    if src.path is not None:
        return Path(src.path)
    out = cache_file(world, bench)
    if not out.is_file():
        rows = load_hub(src)
        manifest.atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def load_hub(src: DataSource) -> list[dict]:
    """Rows of a hub dataset in the schema the templates read (see the module docstring)."""
    import datasets

    def load(name: str | None) -> list[dict]:
        try:
            return [dict(r) for r in datasets.load_dataset(src.hub, name, split=src.split)]
        except Exception as exc:  # the hub's errors vary by cause; the fix is the same
            raise KdError(
                f"cannot load {src.hub} ({name or 'default'}, {src.split}) from the hub: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; log in "
                "(`hf auth login`, some are gated) on a machine with hub access, run once to fill "
                "the cache under <results>/<world>/data/eval/, or point `data` at a local JSONL"
            ) from exc

    if src.loader == "flores_pair":
        rows = flores_pairs(load(src.name), load(src.target), src.name, src.target)
    elif src.loader == "arc":
        rows = [arc_letters(r) for r in load(src.name)]
    else:
        rows = load(src.name)
    return rows[src.start:src.stop]


def flores_pairs(source: list[dict], target: list[dict], src_lang: str, tgt_lang: str) -> list[dict]:
    """Zip two flores_plus language configs by sentence id into Flores-200's paired schema
    ({"id", "sentence_<src>", "sentence_<tgt>"}), in id order."""
    by_id = {r["id"]: r["text"] for r in target}
    missing = [r["id"] for r in source if r["id"] not in by_id]
    if missing:
        raise KdError(f"flores: {len(missing)} {src_lang} sentences have no {tgt_lang} pair (ids {missing[:3]}...)")
    return [{"id": r["id"], f"sentence_{src_lang}": r["text"], f"sentence_{tgt_lang}": by_id[r["id"]]}
            for r in sorted(source, key=lambda r: r["id"])]


def arc_letters(row: dict) -> dict:
    """ARC rows label some options 1-4 instead of A-D: relabel as letters, in order."""
    labels = list(row["choices"]["label"])
    key = LETTERS[labels.index(row["answerKey"])]
    return {**row, "choices": {"text": list(row["choices"]["text"]), "label": list(LETTERS[:len(labels)])},
            "answerKey": key}
