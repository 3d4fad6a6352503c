"""Where every output lives. The CLI and the Snakefile both use these functions, so a rule's
declared output and the file the verb writes can never drift apart.

    results/<world>/world/...                                  the toy world's built artefacts
    results/<world>/data/<dataset>/<size>.jsonl                nested subsets (+ run.json)
    results/<world>/models/<model>/<method>/<task>/<size>/     weights + tokenizer + run.json
    results/<world>/evals/<model>/<method>/<task>/<size>/<suite>.json
    results/<world>/cache/teacher/<teacher>-<key>/             top-k teacher cache (optional)
"""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = "run.json"  # written last: its existence means the work completed


def world_dir(results: Path, world: str) -> Path:
    return Path(results) / world


def built_world_dir(results: Path, world: str) -> Path:
    """The toy world's tokenizer, base models, data and benchmarks (`kdtools toy`)."""
    return world_dir(results, world) / "world"


def data_dir(results: Path, world: str, dataset: str) -> Path:
    return world_dir(results, world) / "data" / dataset


def subset_file(results: Path, world: str, dataset: str, size: str) -> Path:
    return data_dir(results, world, dataset) / f"{size}.jsonl"


def model_name(model: str) -> str:
    """A folder-safe name for a model alias ('3b') or path ('/x/my-model' -> 'my-model')."""
    name = Path(model.rstrip("/")).name if ("/" in model or model.startswith(".")) else model
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def model_dir(
    results: Path, world: str, model: str, method: str, task: str, size: str, variant: str = ""
) -> Path:
    """`variant` names a non-default dimension (e.g. 'init-base'), appended to the size folder."""
    leaf = f"{size}+{variant}" if variant else size
    return world_dir(results, world) / "models" / model_name(model) / method / task / leaf


def eval_file(
    results: Path, world: str, model: str, method: str, task: str, size: str, suite: str,
    variant: str = "",
) -> Path:
    leaf = f"{size}+{variant}" if variant else size
    return world_dir(results, world) / "evals" / model_name(model) / method / task / leaf / f"{suite}.json"


def teacher_cache_dir(results: Path, world: str, teacher: str, key: str) -> Path:
    """A teacher's top-k log-probabilities on one dataset (`kdtools gkd --teacher-cache`),
    shared by every student and epoch; `key` hashes the teacher, the data, k and the template."""
    return world_dir(results, world) / "cache" / "teacher" / f"{model_name(teacher)}-{key}"
