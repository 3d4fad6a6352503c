"""`kdtools data`: nested, deterministic subsets of the instruction data.

    kdtools data                       # paper world: allenai/tulu-3-sft-mixture from the hub
    kdtools --world toy data           # the toy world's generated instructions
    kdtools data --source my.jsonl --name mydata
    kdtools data --task translation    # a domain task's training split (all rows: size 'full')

A domain task in a world with a `tasks:` block (the paper world) is first fetched: its train,
dev and test sources (hub datasets, cut as the paper does) are written once to
<results>/<world>/data/<task>/splits/<split>.jsonl in the real datasets' schemas; synth reads
dev/test from there for its contamination check, and compute nodes never need the hub again.

One seeded permutation of all rows; the subset of size n is its first n rows, so 10k is inside
20k is inside ... full, and `10k.jsonl` is literally the first 10,000 lines of `20k.jsonl`.
Every row is checked against Tulu 3's `messages` schema before anything is written. Each file
is written atomically; `run.json` (counts, hashes, source, seed) is written last.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from kdtools import manifest, paths, tasks
from kdtools.chat import validate_messages
from kdtools.errors import KdError
from kdtools.world import World

console = Console(stderr=True, soft_wrap=True)
KEEP_COLUMNS = ("id", "messages", "source")


@dataclass(frozen=True)
class DataJob:
    world: World
    source: str                 # hub id or local path, '@world/' already expanded
    split: str
    name: str                   # dataset folder name
    sizes: tuple[tuple[str, int | None], ...]  # (label, rows or None = all), ascending
    out_dir: Path
    seed: int
    force: bool
    task: str | None = None     # a domain task: rows are converted with kdtools.tasks
    task_sources: tuple = ()    # (split, DataSource) to fetch first (worlds with a tasks: block)

    def config(self) -> dict:
        config = {
            "world": self.world.name, "source": self.source, "split": self.split,
            "name": self.name, "sizes": dict(self.sizes), "seed": self.seed, "task": self.task,
        }
        if self.task_sources:
            config["task_sources"] = {split: asdict(src) for split, src in self.task_sources}
        return config


def make_job(world: World, source: str | None = None, sizes: str | None = None,
             name: str | None = None, task: str | None = None, force: bool = False) -> DataJob:
    """Validate every argument (cheap checks only) and resolve them against the world.

    With `task`, the source is the task's training split (converted to `messages`) and the only
    size is 'full': the paper's domain tasks train on all of their ~1k human examples."""
    if task:
        if source or sizes:
            raise KdError("--task takes its data from the task's training split: drop --source/--sizes")
        sources = task_sources(world, task)
        src = str(tasks.splits_dir(world, task) / "train.jsonl" if sources else tasks.split_file(world, task, "train"))
        return DataJob(world=world, source=src, split="train", name=task, sizes=(("full", None),),
                       out_dir=paths.data_dir(world.results, world.name, task), seed=world.seed,
                       force=force, task=task, task_sources=sources)
    labels = [s.strip() for s in sizes.split(",") if s.strip()] if sizes else list(world.data.sizes)
    if not labels:
        raise KdError("--sizes is empty: give labels like 10k,40k,full")
    resolved = [(label, world.size_rows(label)) for label in labels]
    resolved.sort(key=lambda s: float("inf") if s[1] is None else s[1])
    src = world.expand(source or world.data.source)
    name = name or (world.data.name if source is None else Path(source).stem.replace(".", "_"))
    return DataJob(
        world=world, source=src, split=world.data.split, name=name, sizes=tuple(resolved),
        out_dir=paths.data_dir(world.results, world.name, name), seed=world.seed, force=force,
    )


def task_sources(world: World, task: str) -> tuple:
    """((split, DataSource), ...) of a task in the world's `tasks:` block; () for toy files."""
    from kdtools.evaluation.config import parse_source

    tasks.check_task(task)
    spec = world.tasks.get(task)
    if not spec:
        return ()
    return tuple((split, parse_source(spec[split], f"{world.file}: tasks.{task}.{split}", world))
                 for split in ("train", "dev", "test"))


def fetch_task_splits(job: DataJob) -> None:
    """Write each task split not yet on disk (hub download or local file, rows[start:stop])."""
    from kdtools.evaluation.sources import load_hub

    for split, src in job.task_sources:
        out = tasks.splits_dir(job.world, job.task) / f"{split}.jsonl"
        if out.is_file() and not job.force:
            continue
        rows = read_jsonl(Path(src.path))[src.start:src.stop] if src.path else load_hub(src)
        if not rows:
            raise KdError(f"tasks.{job.task}.{split} in {job.world.file} gave no rows: check its split and start/stop")
        manifest.atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        console.print(f"  {job.task} {split}: {len(rows):,} rows -> {out}")


def _is_local_file(source: str) -> bool:
    """A file we read ourselves (clear line-numbered errors); anything else - a hub id or a
    folder laid out like a hub dataset repo - goes through `datasets.load_dataset`."""
    return source.endswith((".jsonl", ".json", ".parquet")) or Path(source).is_file()


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a malformed line is a KdError naming the file and the line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise KdError(
                    f"{path} line {lineno} is not valid JSON ({exc.msg}): fix or remove that line"
                ) from None
    return rows


def load_rows(source: str, split: str, world: World) -> list[dict]:
    """All rows of the source, as dicts with (at least) a `messages` field."""
    if _is_local_file(source):
        path = Path(source)
        if not path.is_file():
            hint = f" (run `kdtools --world {world.name} toy` first)" if world.toy else ""
            raise KdError(f"data source {path} does not exist{hint}")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                return pq.read_table(path).to_pylist()
            except Exception as exc:  # pyarrow raises several types for a bad file
                raise KdError(f"{path} is not a readable Parquet file ({exc}): re-export it") from None
        return read_jsonl(path)
    # The hub (allenai/tulu-3-sft-mixture on a cluster: network or a warm HF cache), or a local
    # folder in the same layout.
    import datasets

    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as exc:  # network, auth, unknown id: all surface here
        raise KdError(
            f"could not load dataset '{source}' (split {split}) from the hub: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}; check the id, HF_TOKEN and network, "
            "or pass --source with a local .jsonl/.parquet"
        ) from None
    columns = [c for c in KEEP_COLUMNS if c in ds.column_names]
    return ds.select_columns(columns).to_list()


def nested_order(n_rows: int, seed: int) -> list[int]:
    """One seeded permutation of row indices; every subset is a prefix of it."""
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return order


def run(job: DataJob) -> dict:
    if done := manifest.reusable(job.out_dir, job.config(), job.force):
        console.print(f"[green]up to date:[/] {job.out_dir}/run.json")
        return done
    started = time.time()
    if job.task_sources:
        fetch_task_splits(job)
    rows = load_rows(job.source, job.split, job.world)
    if job.task:
        rows = [tasks.to_messages(job.task, row, i, job.world.source_language)
                for i, row in enumerate(rows)]
    if not rows:
        raise KdError(f"data source {job.source} has no rows: point --source at a non-empty dataset")
    for i, row in enumerate(rows):
        validate_messages(row, f"{job.source} row {i + 1}")
    largest = max((n for _, n in job.sizes if n is not None), default=0)
    if largest > len(rows):
        label = next(lbl for lbl, n in job.sizes if n == largest)
        raise KdError(
            f"size {label} needs {largest:,} rows but {job.source} has only {len(rows):,}: "
            "choose a smaller size or 'full'"
        )

    console.print(f"[bold]data[/] {len(rows):,} valid rows from {job.source} -> {job.out_dir}")
    order = nested_order(len(rows), job.seed)
    files = {}
    for label, n in job.sizes:
        n = len(rows) if n is None else n
        path = job.out_dir / f"{label}.jsonl"
        lines = [json.dumps({k: rows[i][k] for k in KEEP_COLUMNS if k in rows[i]}, ensure_ascii=False)
                 for i in order[:n]]
        manifest.atomic_write_text(path, "\n".join(lines) + "\n")
        files[label] = {"file": path.name, "rows": n, "sha256": manifest.file_sha256(path)}
        console.print(f"  {label:>5}: {n:>9,} rows -> {path}")
    return manifest.write_manifest(
        job.out_dir, "data", job.config(), started,
        source_rows=len(rows), subsets=files,
    )


def subset_path(world: World, size: str, dataset: str | None = None, command: str = "data") -> Path:
    """The file `kdtools data` writes for `size`; a KdError naming the command if missing."""
    world.size_rows(size)
    dataset = dataset or world.data.name
    path = paths.subset_file(world.results, world.name, dataset, size)
    if not path.is_file() or manifest.read_manifest(path.parent) is None:
        raise KdError(
            f"no {size} subset of '{dataset}' yet ({path}): run `kdtools --world {world.name} {command}` first"
        )
    return path
