"""`kdtools eval` end to end on the smoke world through the real CLI and lm-eval, and its
refusals of bad input (one line, exit 2, before any model loads)."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest
import yaml

from conftest import kdtools
from kdtools.evaluation.results import validate
from tests.test_itemscores import assert_items_reproduce

EVALS = ("smoke", "evals")


def result(results: Path, *parts: str) -> dict:
    payload = json.loads(results.joinpath(*EVALS, *parts).read_text())
    validate(payload)  # workflow/schemas/eval.schema.json
    return payload


def samples(results: Path, *parts: str) -> list[dict]:
    path = results.joinpath(*EVALS, *parts)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_general_suite(smoke_results):
    proc = kdtools("eval", "--model", "1b", "--suite", "general", "--limit", "5", results=smoke_results)
    out = result(smoke_results, "1b", "base", "general", "none", "general.json")
    assert (out["model"], out["method"], out["task"], out["size"], out["suite"]) == ("1b", "base", "general", "none", "general")
    assert list(out["metrics"]) == ["bbh", "gpqa", "ifeval", "infobench", "mmlu_pro"]
    assert all(0 <= v <= 100 for v in out["metrics"].values())
    assert {b: out["benchmarks"][b]["n"] for b in out["benchmarks"]} == dict.fromkeys(out["metrics"], 5)
    assert out["benchmarks"]["infobench"]["requirements"] > 0
    assert out["judge"] == {"kind": "rules"} and out["limit"] == 5 and out["backend"] == "hf"
    assert "lm_eval" in out["versions"] and out["missing"] == {}
    rows = samples(smoke_results, "1b", "base", "general", "none", "general.samples.jsonl")
    assert len(rows) == 25
    assert all(r["prompt"].startswith("<|user|>\n") and r["prompt"].endswith("<|assistant|>\n") for r in rows)
    assert all("requirements" in r["scores"] for r in rows if r["benchmark"] == "infobench")
    assert_items_reproduce(smoke_results.joinpath(*EVALS, "1b", "base", "general", "none", "general.json"))
    assert "bbh" in proc.stdout and "infobench" in proc.stdout  # the summary table
    # a rerun of the same config is reused, not recomputed
    again = kdtools("eval", "--model", "1b", "--suite", "general", "--limit", "5", results=smoke_results)
    assert "up to date" in again.stderr


@pytest.mark.slow
def test_translation_with_tiny_comet(smoke_results, tiny_comet, comet_python, tmp_path):
    raw = yaml.safe_load(Path(__file__).parents[2].joinpath("workflow/config/smoke.yaml").read_text())
    raw["eval"]["comet"]["model"] = str(tiny_comet)
    world = tmp_path / "smoke-comet.yaml"
    world.write_text(yaml.safe_dump(raw))
    kdtools("eval", "--model", "70b-it", "--suite", "translation", "--limit", "4", results=smoke_results,
            world=str(world), env={"KDTOOLS_COMET_PYTHON": str(comet_python)})
    out = result(smoke_results, "70b-it", "base", "general", "none", "translation.json")
    assert set(out["metrics"]) == {"comet", "chrf"} and out["missing"] == {}
    assert isinstance(out["metrics"]["comet"], float)
    assert out["benchmarks"]["translation"]["comet_model"] == str(tiny_comet)
    rows = samples(smoke_results, "70b-it", "base", "general", "none", "translation.samples.jsonl")
    assert len(rows) == 4 and all({"chrf", "comet"} <= set(r["scores"]) for r in rows)
    assert rows[0]["prompt"].startswith("<|user|>\nTranslate from Amsi to English: ")


def test_translation_without_comet_reports_chrf_and_says_why(smoke_results, tmp_path):
    out_file = tmp_path / "translation.json"
    proc = kdtools("eval", "--model", "70b-it", "--suite", "translation", "--limit", "3", "--out",
                   str(out_file), results=smoke_results, env={"KDTOOLS_COMET_PYTHON": "none"})
    out = json.loads(out_file.read_text())
    validate(out)
    assert out["metrics"]["comet"] is None and out["metrics"]["chrf"] is not None
    assert "make comet-env" in out["missing"]["comet"]
    assert "make comet-env" in proc.stderr
    assert (tmp_path / "translation.samples.jsonl").is_file()
    assert_items_reproduce(out_file)     # corpus chrF from the samples' segments


@pytest.mark.slow
def test_summarization_and_arc_on_a_trained_folder(smoke_results, tmp_path):
    """A model folder's run.json dims name the output folder and fill the extra fields."""
    folder = smoke_results / "smoke" / "models" / "1b" / "gkd" / "general" / "10k+init-base"
    shutil.copytree(smoke_results / "smoke" / "world" / "base" / "1b", folder, dirs_exist_ok=True)
    dims = {"student": "1b", "method": "gkd", "size": "10k", "task": "general", "init": "base",
            "teacher": "70b"}
    (folder / "run.json").write_text(json.dumps({"verb": "gkd", "config_hash": "abc", "dims": dims}))
    for suite, metric in (("summarization", "rougeL"), ("arc", "accuracy")):
        kdtools("eval", "--model", str(folder), "--suite", suite, "--limit", "3", results=smoke_results)
        out = result(smoke_results, "1b", "gkd", "general", "10k+init-base", f"{suite}.json")
        assert (out["model"], out["method"], out["size"], out["init"], out["teacher"]) == ("1b", "gkd", "10k", "base", "70b")
        assert list(out["metrics"]) == [metric] and 0 <= out["metrics"][metric] <= 100
        assert out["benchmarks"][suite]["n"] == 3
        assert_items_reproduce(smoke_results.joinpath(*EVALS, "1b", "gkd", "general", "10k+init-base", f"{suite}.json"))
    card = (folder / "README.md").read_text()     # the model card now shows both suites' scores
    assert "| summarization | rougeL |" in card and "| arc | accuracy |" in card


def _refused(smoke_results, *args: str) -> str:
    started = time.time()
    proc = kdtools("eval", *args, results=smoke_results, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert "Loading weights" not in proc.stderr and time.time() - started < 30
    return lines[0]


def test_bad_input_is_refused_before_any_model_loads(smoke_results, tmp_path):
    assert "unknown suite 'nope'" in _refused(smoke_results, "--model", "1b", "--suite", "nope")
    assert "--limit must be a positive" in _refused(smoke_results, "--model", "1b", "--limit", "0")
    assert "unknown model" in _refused(smoke_results, "--model", "13b")
    no_config = tmp_path / "empty"
    no_config.mkdir()
    assert "no config.json" in _refused(smoke_results, "--model", str(no_config))
    no_run = tmp_path / "untrained"
    shutil.copytree(smoke_results / "smoke" / "world" / "base" / "1b", no_run)
    assert "no run.json" in _refused(smoke_results, "--model", str(no_run))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    msg = _refused(smoke_results, "--model", "1b", "--judge-url", f"http://127.0.0.1:{port}")
    assert "not reachable" in msg and "--judge-url" in msg
