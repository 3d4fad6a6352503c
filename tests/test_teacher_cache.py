"""`kdtools gkd --teacher-cache` for real on the smoke world: the teacher's top-k is computed
once per (teacher, data) and reused by another student, off-policy steps run no teacher forward,
on-policy steps still do, the loss stays close to the exact one, and exact runs keep their hash."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kdtools.cli import app
from kdtools.gkd import GkdSettings
from tests.conftest import kdtools, one_line_error

# Base students and the instruction-tuned teacher as is: no SFT needed first.
COMMON = ("--data", "10k", "--init", "base", "--teacher", "70b-it")


def run_json(out):
    return json.loads((out / "run.json").read_text())


@pytest.mark.slow
def test_cache_built_once_reused_and_close_to_exact(fresh_smoke, tmp_path):
    results = fresh_smoke
    first = kdtools("gkd", "--student", "1b", *COMMON, "--lmbda", "0", "--max-steps", "3",
                    "--teacher-cache", "--out", str(tmp_path / "cached"), results=results)
    cached = run_json(tmp_path / "cached")
    m = cached["metrics"]
    # 3 steps x 2 accumulation micro-batches, every one from the cache: no teacher forward
    assert m["teacher_forwards"] == 0 and m["teacher_cache_hits"] == 6, m
    assert "teacher cache built" in first.stderr, first.stderr
    assert cached["config"]["gkd"]["teacher_cache"] is True
    folder = results / "smoke" / "cache" / "teacher"
    (cache,) = folder.iterdir()
    made = json.loads((cache / "run.json").read_text())
    assert made["key"]["k"] == 64 and made["bytes_per_token"] == 64 * 6 + 4

    # The cached loss against the exact one, for the base student on the subset's rows: a lower
    # bound (coarse-graining), within 25% on the smoke world, whose untrained 320-token teacher
    # leaves much of its mass outside its top 64 (benchmarks/teacher_cache.py reports it).
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kdtools import teachercache
    from kdtools.chat import prepare_tokenizer
    from kdtools.world import load_world

    world = load_world("smoke", results)
    base = results / "smoke" / "world" / "base"
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(base / "1b"), world.chat_template)
    rows = [json.loads(line) for line in (results / "smoke" / "data" / "tulu" / "10k.jsonl").open()]
    dev = teachercache.deviation(AutoModelForCausalLM.from_pretrained(base / "1b"),
                                 AutoModelForCausalLM.from_pretrained(base / "70b-it"), tokenizer,
                                 teachercache.TeacherCache(cache), rows, world.train.max_length)
    assert dev["tokens"] == made["tokens"]
    assert dev["cached_loss"] <= dev["exact_loss"] * (1 + 1e-3)
    assert dev["relative_deviation"] < 0.25, dev

    # Another student reuses the cache; its on-policy steps still run the teacher.
    mtime = (cache / "run.json").stat().st_mtime_ns
    again = kdtools("gkd", "--student", "3b", *COMMON, "--max-steps", "4", "--teacher-cache",
                    results=results)
    m = run_json(results / "smoke" / "models" / "3b" / "gkd" / "general"
                 / "10k+init-base+teacher-70b-it+tcache-k64")["metrics"]
    assert "reused" in again.stderr and (cache / "run.json").stat().st_mtime_ns == mtime
    assert list(folder.iterdir()) == [cache]
    assert m["teacher_forwards"] == 2 * m["onpolicy_steps"]
    assert m["teacher_cache_hits"] == 2 * (m["steps"] - m["onpolicy_steps"])


def test_exact_runs_keep_their_config_hash():
    """The cache's fields are recorded only when it is on: results made before it stay valid."""
    assert GkdSettings().config() == {"lmbda": 0.5, "beta": 0.5, "temperature": 1.0,
                                      "max_new_tokens": 1024, "loss": "fused"}
    assert GkdSettings(teacher_cache=True, teacher_cache_k=8).config()["teacher_cache_k"] == 8


@pytest.mark.parametrize("args,needle", [
    (("--teacher-cache", "--teacher-cache-k", "0"), "--teacher-cache-k must be at least 1"),
    (("--teacher-cache-k", "8"), "--teacher-cache-k goes with --teacher-cache"),
])
def test_bad_cache_options_are_one_line_exit_2(tmp_path, args, needle):
    result = CliRunner().invoke(app, ["--world", "smoke", "--results", str(tmp_path), "gkd",
                                      "--student", "1b", "--data", "10k", *args])
    one_line_error(result, needle)
