"""The catalogue of bad inputs (README, "Bad input"): each is refused with one line naming the
problem and the fix, exit code 2, before any model loads, and nothing already written changes.
The ones that only happen mid-run (a full disk, a corrupt checkpoint, a NaN loss) are in
tests/test_checkpoint.py; they hold to the same rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdtools.cli import app
from tests.conftest import REPO, one_line_error, other_tokenizer_model, tulu_rows, write_jsonl

SMOKE = (REPO / "workflow" / "config" / "smoke.yaml").read_text()
ONE_ROW = tulu_rows(1)


def jsonl(tmp: Path, name: str, text: str) -> str:
    """A file of this text (JSONL or a world YAML) in the test's folder."""
    path = tmp / name
    path.write_text(text)
    return str(path)


def sft_done(root: Path) -> Path:
    """A finished SFT of 1b on 10k (its manifest only): what a compute-matched control continues."""
    folder = root / "smoke" / "models" / "1b" / "sft" / "general" / "10k"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"verb": "sft", "config_hash": "x", "metrics": {"steps": 3}}))
    return folder


def finished_elsewhere(tmp: Path) -> str:
    """An output folder holding a finished run of another config."""
    out = tmp / "finished"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"verb": "sft", "config_hash": "another"}))
    return str(out)


# id -> (arguments after `kdtools --world smoke --results ROOT`, built by a function of (root, tmp)
#        where needed; words the one error line must contain)
CATALOGUE = {
    "malformed JSONL": (lambda r, t: ["data", "--source", jsonl(t, "bad.jsonl", json.dumps(ONE_ROW[0]) + "\n{broken\n"),
                                      "--name", "bad"], ["line 2 is not valid JSON", "fix or remove that line"]),
    "rows without messages": (lambda r, t: ["data", "--source", jsonl(t, "text.jsonl", '{"text": "hi"}\n'), "--name", "x"],
                              ["no 'messages' field", "Tulu 3's schema"]),
    "wrong roles": (lambda r, t: ["data", "--source", jsonl(t, "roles.jsonl", json.dumps(
        {"messages": [{"role": "human", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n"),
        "--name", "x"], ["role 'human'", "system, user, assistant"]),
    "empty dataset": (lambda r, t: ["data", "--source", jsonl(t, "empty.jsonl", ""), "--name", "x"],
                      ["has no rows", "non-empty dataset"]),
    "size larger than the data": (lambda r, t: ["data", "--source", str(write_jsonl(t / "one.jsonl", ONE_ROW)),
                                                "--name", "x", "--sizes", "10k"],
                                  ["size 10k needs 50 rows", "has only 1", "choose a smaller size"]),
    "unknown world": (lambda r, t: ["--world", "papr", "sft", "--model", "1b", "--data", "10k"],
                      ["unknown world 'papr'", "paper, toy, smoke"]),
    "world file that does not parse": (lambda r, t: ["--world", jsonl(t, "w.yaml", "world: smoke\nmodels: [1b\n"),
                                                     "sft", "--model", "1b", "--data", "10k"],
                                       ["is not valid YAML", "fix the syntax"]),
    "misspelt config key": (lambda r, t: ["--world", jsonl(t, "w.yaml", SMOKE.replace("  weight_decay:", "  weight_decy:")),
                                          "sft", "--model", "1b", "--data", "10k"],
                            ["unknown key 'weight_decy'", "check the spelling", "weight_decay"]),
    "unknown model alias": (lambda r, t: ["sft", "--model", "2b", "--data", "10k"],
                            ["unknown model '2b'", "1b, 3b, 8b, 70b"]),
    "unknown data size": (lambda r, t: ["sft", "--model", "1b", "--data", "15k"],
                          ["data size '15k' is not defined", "10k, 20k, 40k, full"]),
    "unknown task": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--task", "poetry"],
                     ["unknown task 'poetry'", "translation, summarization, arc"]),
    "unknown eval suite": (lambda r, t: ["eval", "--model", "1b", "--suite", "poetry"],
                           ["unknown suite 'poetry'", "general, translation"]),
    "unknown workflow target": (lambda r, t: ["plan", "table9"], ["cannot build table9", "table1"]),
    "lambda out of range": (lambda r, t: ["gkd", "--student", "1b", "--data", "10k", "--lmbda", "1.5"],
                            ["--lmbda must be in [0, 1]", "1.5"]),
    "beta out of range": (lambda r, t: ["gkd", "--student", "1b", "--data", "10k", "--beta", "-0.1"],
                          ["--beta must be in [0, 1]", "-0.1"]),
    "non-positive temperature": (lambda r, t: ["gkd", "--student", "1b", "--data", "10k", "--temperature", "0"],
                                 ["--temperature must be positive"]),
    "non-positive max steps": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--max-steps", "0"],
                               ["--max-steps must be positive"]),
    "unwritable output folder": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--out",
                                               jsonl(t, "a-file", "x") + "/model"],
                                 ["cannot write to", "is a file, not a folder", "pick another --out"]),
    "missing teacher": (lambda r, t: ["gkd", "--student", "1b", "--data", "10k", "--init", "base"],
                        ["needs the SFT of 70b on general 10k", "kdtools --world smoke sft --model 70b --data 10k"]),
    "missing student SFT": (lambda r, t: ["gkd", "--student", "1b", "--data", "10k"],
                            ["needs the SFT of 1b on general 10k", "first"]),
    "data not written yet": (lambda r, t: ["sft", "--model", "1b", "--task", "arc", "--data", "full", "--init", "base"],
                             ["no full subset of 'arc' yet", "data --task arc"]),
    "init that is not a model": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--init", str(t)],
                                 ["--init", "a model folder with a config.json"]),
    "finished run of another config at --out": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--out",
                                                              finished_elsewhere(t)],
                                                ["holds a finished run with a different config", "--force"]),
    "teacher and student tokenizers differ": (lambda r, t: ["gkd", "--student", "1b", "--data", "10k", "--init", "base",
                                                            "--teacher", str(other_tokenizer_model(t / "other-teacher"))],
                                              ["tokenizers differ", "same model family"]),
    "mix without synthetic data": (lambda r, t: ["gkd", "--student", "1b", "--data", "full", "--task", "arc",
                                                 "--method", "mix"], ["--method mix", "--synthetic SIZE"]),
    "unknown synthetic size": (lambda r, t: ["synth", "--task", "translation", "--n", "7k"],
                               ["synthetic size '7k' is not defined", "5k, 10k"]),
    "non-positive eval limit": (lambda r, t: ["eval", "--model", "1b", "--suite", "arc", "--limit", "0"],
                                ["--limit must be a positive number", "omit it"]),
    "unknown GPU for plan": (lambda r, t: ["plan", "table3", "--gpu", "v100"], ["--gpu", "h100"]),
    "unknown control match": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--match", "dpo"],
                              ["--match must be one of gkd, seqkd, mix, two_stage", "'dpo'"]),
    "control before its KD run": (lambda r, t: [sft_done(r).parent.parent.name, "--model", "1b", "--data", "10k",
                                                "--match", "gkd"],
                                  ["needs the finished gkd run it matches", "gkd --student 1b --data 10k` first"]),
    "control with --max-steps": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--match", "gkd",
                                               "--max-steps", "5"], ["--max-steps and --match", "drop one"]),
    "synthetic size without a control": (lambda r, t: ["sft", "--model", "1b", "--data", "10k", "--synthetic", "5k"],
                                         ["--synthetic goes with --match mix or two_stage"]),
    "unknown table in grid.controls": (lambda r, t: ["--world", jsonl(t, "w.yaml", SMOKE.replace(
        "  synthetic: [5k, 10k]\n", "  synthetic: [5k, 10k]\n  controls: [table4]\n")), "sft", "--model", "1b",
        "--data", "10k"], ["invalid value at grid.controls"]),
    "publish without HF_TOKEN": (lambda r, t: ["publish", str(sft_done(r)), "--repo", "org/name"],
                                 ["HF_TOKEN is not set", "export HF_TOKEN="]),
    "publish to a bad repository id": (lambda r, t: ["publish", str(sft_done(r)), "--repo", "just-a-name"],
                                       ["--repo 'just-a-name' is not a hub repository id", "ORG/NAME"]),
    "publish a folder without run.json": (lambda r, t: ["publish", str(t), "--repo", "org/name"],
                                          ["has no run.json", "not a finished kdtools run"]),
}


def snapshot(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, fresh_smoke, tmp_path):
    build, needles = CATALOGUE[case]
    args = build(fresh_smoke, tmp_path)
    before = snapshot(fresh_smoke)
    world = [] if args[0] == "--world" else ["--world", "smoke"]
    result = CliRunner().invoke(app, [*world, "--results", str(fresh_smoke), *args], env={"HF_TOKEN": None})
    one_line_error(result, *needles)
    after = snapshot(fresh_smoke)
    assert {p: after.get(p) for p in before} == before                  # nothing changed or lost
    assert all(p.name.endswith(".lock") for p in set(after) - set(before)), set(after) - set(before)


def test_a_job_on_an_output_another_job_is_writing_fails_at_once(fresh_smoke, tmp_path):
    out = tmp_path / "busy"
    holder = subprocess.Popen(  # another process holds the output's lock, as a running job does
        [sys.executable, "-c", "import sys, time; from kdtools import staging\n"
         f"with staging.locked({str(out)!r}):\n    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(app, ["--world", "smoke", "--results", str(fresh_smoke), "sft", "--model", "1b",
                                          "--data", "10k", "--out", str(out)])
    finally:
        holder.kill()
        holder.wait()
    one_line_error(result, f"{out} is being written by kdtools pid {holder.pid}", "wait for that job")
    assert not out.exists()


def test_the_catalogue_is_the_readme_list():
    """Every case here is listed in the README's bad-input table, and it has at least 20."""
    readme = (REPO / "README.md").read_text()
    assert len(CATALOGUE) >= 20
    missing = [case for case in CATALOGUE if f"| {case} |" not in readme]
    assert not missing, missing
