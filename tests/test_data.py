"""`kdtools data`: nested, exact, deterministic subsets from JSONL or Parquet in Tulu's schema."""

from __future__ import annotations

import json

import pytest

from kdtools import data
from kdtools.world import load_world
from tests.conftest import tulu_rows, write_jsonl


def lines(path):
    return path.read_text().splitlines()


@pytest.fixture
def world(tmp_path):
    return load_world("smoke", tmp_path / "results")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_subsets_nested_exact_and_described(world, tmp_path, fmt):
    rows = tulu_rows(250)
    if fmt == "jsonl":
        source = write_jsonl(tmp_path / "tulu.jsonl", rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        source = tmp_path / "tulu.parquet"
        pq.write_table(pa.Table.from_pylist(rows), source)
    done = data.run(data.make_job(world, source=str(source), name="tulu"))

    files = {label: world.results / "smoke" / "data" / "tulu" / f"{label}.jsonl"
             for label in ("10k", "20k", "40k", "full")}
    expected = {"10k": 50, "20k": 100, "40k": 200, "full": 250}
    for label, path in files.items():
        assert len(lines(path)) == expected[label]
        assert done["subsets"][label]["rows"] == expected[label]
    # Nested: each subset is a prefix of the next one.
    assert lines(files["20k"])[:50] == lines(files["10k"])
    assert lines(files["full"])[:200] == lines(files["40k"])
    # Every source row appears exactly once in full, in Tulu's schema.
    full = [json.loads(line) for line in lines(files["full"])]
    assert sorted(r["id"] for r in full) == sorted(r["id"] for r in rows)
    assert set(full[0]) == {"id", "messages", "source"}
    assert done["source_rows"] == 250 and done["config_hash"] and done["versions"]["kdtools"]


def test_deterministic_and_seeded(world, tmp_path):
    source = str(write_jsonl(tmp_path / "tulu.jsonl", tulu_rows(250)))
    a = data.run(data.make_job(world, source=source, name="a"))
    b = data.run(data.make_job(world, source=source, name="b"))
    assert {k: v["sha256"] for k, v in a["subsets"].items()} == \
           {k: v["sha256"] for k, v in b["subsets"].items()}
    from dataclasses import replace

    other = data.run(data.make_job(replace(world, seed=world.seed + 1), source=source, name="c"))
    assert other["subsets"]["10k"]["sha256"] != a["subsets"]["10k"]["sha256"]
    assert other["subsets"]["full"]["sha256"] != a["subsets"]["full"]["sha256"]  # order differs too


def test_rerun_is_a_no_op_and_force_rewrites(world, tmp_path):
    source = str(write_jsonl(tmp_path / "tulu.jsonl", tulu_rows(120)))
    job = data.make_job(world, source=source, name="tulu", sizes="10k,20k")
    first = data.run(job)
    manifest = world.results / "smoke" / "data" / "tulu" / "run.json"
    stamp = manifest.stat().st_mtime_ns
    assert data.run(job)["started_at"] == first["started_at"]
    assert manifest.stat().st_mtime_ns == stamp
    data.run(data.make_job(world, source=source, name="tulu", sizes="10k,20k", force=True))
    assert manifest.stat().st_mtime_ns != stamp


def test_subset_path_requires_the_manifest(world, tmp_path):
    from kdtools.errors import KdError

    folder = world.results / "smoke" / "data" / "tulu"
    write_jsonl(folder / "10k.jsonl", tulu_rows(50))  # a file without run.json: unfinished work
    with pytest.raises(KdError, match="kdtools --world smoke data"):
        data.subset_path(world, "10k")


def test_hub_code_path_with_a_local_dataset_repo(world, tmp_path):
    """The paper world loads Tulu 3 with `datasets.load_dataset(id, split=...)`; a folder laid out
    like the hub repo (data/train-*.parquet, extra columns) goes through exactly that call."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = tmp_path / "tulu-3-sft-mixture"
    (repo / "data").mkdir(parents=True)
    rows = tulu_rows(120)
    for r in rows:
        r["extra_column"] = "dropped"
    pq.write_table(pa.Table.from_pylist(rows), repo / "data" / "train-00000-of-00001.parquet")
    done = data.run(data.make_job(world, source=str(repo), name="tulu", sizes="10k,20k"))
    assert done["source_rows"] == 120 and done["subsets"]["20k"]["rows"] == 100
    first = json.loads(lines(world.results / "smoke" / "data" / "tulu" / "10k.jsonl")[0])
    assert set(first) == {"id", "messages", "source"}


def test_unreachable_hub_dataset_is_one_clear_error(world):
    from kdtools.errors import KdError

    with pytest.raises(KdError, match="could not load dataset 'nobody/no-such-dataset'"):
        data.run(data.make_job(world, source="nobody/no-such-dataset", name="x", sizes="10k"))
