"""Worlds: one YAML file maps model aliases, data size labels and hyperparameters to real things.

    kdtools --world toy sft --model 1b --data 10k

`paper` is the real study (hub models, Tulu 3), `toy` the embedded world built by `kdtools toy`,
`smoke` a smaller toy world for CI; any other value is a path to a YAML file of the same schema
(workflow/schemas/world.schema.json). A world is loaded and validated once, at the CLI boundary.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from kdtools import paths
from kdtools.errors import KdError

BUILTIN_WORLDS = ("paper", "toy", "smoke")
STUDENTS = ("1b", "3b", "8b")                    # the study's students, smallest first
MODEL_ALIASES = (*STUDENTS, "70b", "70b-it")
SIZE_LABEL = re.compile(r"^([0-9]+k|full)$")
WORLD_PREFIX = "@world/"
CONTROL_TABLES = ("table3", "table1", "table2")   # grid.controls: true


def repo_root() -> Path:
    """The kdtools checkout (workflow/ lives beside the package; the install is editable)."""
    return Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    return Path(os.environ.get("KDTOOLS_CONFIG_DIR", repo_root() / "workflow" / "config"))


def schema_path() -> Path:
    return repo_root() / "workflow" / "schemas" / "world.schema.json"


@dataclass(frozen=True)
class TrainDefaults:
    """Training hyperparameters; the paper world's are Appendix A.2 of the paper."""

    learning_rate: float = 5e-6          # AdamW
    effective_batch_size: int = 128      # per-device batch x accumulation x GPUs
    per_device_batch_size: int = 1
    epochs: float = 2
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_length: int = 4096               # tokens
    bf16: bool = True                    # only where CUDA supports it; fp32 otherwise
    gradient_checkpointing: bool = True
    max_steps: int | None = None         # cap on optimizer steps; None = full epochs
    logging_steps: int = 10
    save_steps: int = 0                  # checkpoint every N steps (0: only on SIGUSR1/SIGTERM)


@dataclass(frozen=True)
class DataSpec:
    name: str                            # folder under <results>/<world>/data/
    source: str                          # hub id, local .jsonl/.parquet, or @world/...
    split: str = "train"
    sizes: dict[str, int | None] = field(default_factory=dict)  # label -> rows (None = all)


@dataclass(frozen=True)
class GridSpec:
    """Which cells the workflow runs (world key `grid`): the paper's by default, fewer in toy worlds."""
    sizes: tuple[str, ...]               # the general ladder of Table 3 / Figures 1-2
    full: str                            # the size standing for "full data" (Table 1, Figure 3, inits)
    synthetic: tuple[str, ...]           # Figure 5's synthetic sizes, smallest first
    controls: tuple[str, ...] = ()       # tables whose compute-matched SFT controls all_tables runs
    demo_tasks: tuple[str, ...] = ()     # domain tasks whose Table 2 cells the quick `demo` runs
    demo_students: tuple[str, ...] = STUDENTS  # ... for these students


@dataclass(frozen=True)
class World:
    name: str
    file: Path
    seed: int
    results: Path
    models: dict[str, str]
    chat_template: str | None
    source_language: str               # the translation task's source language, as prompts name it
    data: DataSpec
    train: TrainDefaults
    wandb: dict
    gkd: dict                            # GKD/SeqKD defaults (lmbda, beta, ...); stages fill gaps
    synth: dict                          # synthetic inputs / annotation settings (domain tasks)
    tasks: dict                          # domain task -> {train, dev, test} sources; {} = toy files
    toy: dict | None
    grid: GridSpec
    raw: dict                            # the validated YAML, for provenance

    @property
    def built_dir(self) -> Path:
        return paths.built_world_dir(self.results, self.name)

    def expand(self, value: str) -> str:
        """Turn '@world/x' into <results>/<world>/world/x; leave hub ids and paths alone."""
        if value.startswith(WORLD_PREFIX):
            return str(self.built_dir / value[len(WORLD_PREFIX):])
        return value

    def resolve_model(self, model: str) -> str:
        """An alias ('3b') -> its hub id or path; an existing path -> itself; else KdError."""
        if model in self.models:
            return self.expand(self.models[model])
        if Path(model).exists():
            return str(Path(model))
        known = ", ".join(self.models)
        raise KdError(
            f"unknown model '{model}': use one of the aliases {known} (world '{self.name}') "
            "or the path of a saved model folder"
        )

    def size_rows(self, label: str) -> int | None:
        """A size label ('40k', 'full') -> the row count this world maps it to (None = all)."""
        if not SIZE_LABEL.match(label):
            raise KdError(
                f"bad data size '{label}': write sizes as the paper does ({', '.join(self.data.sizes)})"
            )
        if label not in self.data.sizes:
            raise KdError(
                f"data size '{label}' is not defined in world '{self.name}': "
                f"use one of {', '.join(self.data.sizes)} or add it under data.sizes in {self.file}"
            )
        return self.data.sizes[label]


def world_file(world: str) -> Path:
    """'toy' -> workflow/config/toy.yaml; a path -> itself (must exist)."""
    if world in BUILTIN_WORLDS:
        return config_dir() / f"{world}.yaml"
    path = Path(world)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    raise KdError(
        f"unknown world '{world}': use one of {', '.join(BUILTIN_WORLDS)} "
        "or the path of a world YAML file (see workflow/config/paper.yaml)"
    )


def validate_world_dict(raw: object, where: str) -> None:
    """Check a parsed world config against the JSON Schema; one line naming the first problem."""
    import jsonschema

    schema = json.loads(schema_path().read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    err = errors[0]
    at = ".".join(str(p) for p in err.absolute_path) or "top level"
    if err.validator == "additionalProperties":
        unknown = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(err.schema.get("properties", {}))
        raise KdError(
            f"{where}: unknown key '{unknown[0] if unknown else '?'}' at {at}: "
            f"check the spelling (allowed here: {allowed})"
        )
    raise KdError(f"{where}: invalid value at {at}: {err.message}")


def load_world(world: str, results: str | Path | None = None) -> World:
    """Load and validate a world; `results` overrides the results root (else env, else ./results)."""
    import yaml

    file = world_file(world)
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise KdError(f"world file {file}{line} is not valid YAML: fix the syntax") from exc
    except OSError as exc:
        raise KdError(f"cannot read world file {file}: {exc.strerror}") from exc
    if not isinstance(raw, dict):
        raise KdError(f"world file {file} must be a YAML mapping like workflow/config/paper.yaml")
    validate_world_dict(raw, str(file))
    root = Path(results or os.environ.get("KDTOOLS_RESULTS") or raw.get("results") or "results")
    data = raw["data"]
    return World(
        name=raw["world"],
        file=file,
        seed=raw["seed"],
        results=root,
        models=dict(raw["models"]),
        chat_template=raw.get("chat_template"),
        source_language=raw.get("source_language", "Assamese"),
        data=DataSpec(data["name"], data["source"], data.get("split", "train"), dict(data["sizes"])),
        train=TrainDefaults(**raw["train"]),
        wandb=dict(raw.get("wandb") or {}),
        gkd=dict(raw.get("gkd") or {}),
        synth=dict(raw.get("synth") or {}),
        tasks=dict(raw.get("tasks") or {}),
        toy=raw.get("toy"),
        grid=grid_spec(raw, file),
        raw=raw,
    )


def grid_spec(raw: dict, file: Path) -> GridSpec:
    """The world's `grid` with the paper's defaults; a label its data or synth sizes lack is an error."""
    grid = raw.get("grid") or {}
    data_sizes = list(raw["data"]["sizes"])
    synth_sizes = dict((raw.get("synth") or {}).get("sizes") or {})
    sizes = tuple(grid.get("sizes") or data_sizes)
    full = grid.get("full") or "full"
    synthetic = tuple(grid.get("synthetic") or synth_sizes)
    for key, labels, known, section in (("sizes", sizes, data_sizes, "data.sizes"),
                                        ("full", (full,), data_sizes, "data.sizes"),
                                        ("synthetic", synthetic, synth_sizes, "synth.sizes")):
        for label in labels:
            if label not in known:
                raise KdError(f"{file}: grid.{key} names '{label}', which {section} does not define: "
                              f"use one of {', '.join(known) or '(none)'} or add it under {section}")
    controls = grid.get("controls", False)
    controls = CONTROL_TABLES if controls is True else tuple(controls or ())
    return GridSpec(sizes, full, tuple(sorted(synthetic, key=lambda k: synth_sizes[k] or 0)), controls,
                    tuple(grid.get("demo_tasks") or ()),
                    tuple(grid.get("demo_students") or GridSpec.demo_students))
