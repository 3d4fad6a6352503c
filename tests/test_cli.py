"""The CLI as a user meets it: help, and every bad input -> one line, exit 2,
before any model is loaded and without writing anything."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from kdtools.cli import app
from tests.conftest import one_line_error, tulu_rows, write_jsonl

runner = CliRunner()
VERBS = ["toy", "data", "sft", "gkd", "seqkd", "synth", "annotate", "eval", "report", "plan"]


def test_help_lists_every_verb():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert verb in result.output


def test_help_imports_no_heavy_library():
    """`kdtools --help` stays instant because torch/transformers/trl load only inside a stage."""
    code = ("import sys; from kdtools.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out


def invoke(tmp_path, *args, world="smoke"):
    return runner.invoke(app, ["--world", world, "--results", str(tmp_path / "results"), *args])


def test_unknown_alias(tmp_path):
    one_line_error(invoke(tmp_path, "sft", "--model", "13b", "--data", "10k"), "13b", "aliases")


def test_size_label_like_40q(tmp_path):
    one_line_error(invoke(tmp_path, "sft", "--model", "1b", "--data", "40q"), "40q")


def test_unknown_world(tmp_path):
    one_line_error(invoke(tmp_path, "sft", "--model", "1b", "--data", "10k", world="moon"),
                   "unknown world 'moon'")


def test_misspelt_config_key(tmp_path):
    from kdtools.world import load_world

    text = load_world("smoke").file.read_text().replace("warmup_ratio", "warmup_ratoi")
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    one_line_error(invoke(tmp_path, "data", world=str(path)), "warmup_ratoi", "spelling")


def test_missing_subset_names_the_command(tmp_path):
    one_line_error(invoke(tmp_path, "sft", "--model", "1b", "--data", "10k"),
                   "kdtools --world smoke data")


def test_dataset_without_messages(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "hi", "completion": "there"}])
    one_line_error(invoke(tmp_path, "data", "--source", str(path), "--sizes", "10k"),
                   "no 'messages' field", "row 1")
    assert not (tmp_path / "results" / "smoke" / "data" / "bad").exists()


def test_wrong_role(tmp_path):
    rows = tulu_rows(3)
    rows[2]["messages"][0]["role"] = "human"
    path = write_jsonl(tmp_path / "roles.jsonl", rows)
    one_line_error(invoke(tmp_path, "data", "--source", str(path), "--sizes", "10k"),
                   "row 3", "'human'")


def test_malformed_jsonl(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"messages": []}\n{"messages": [\n')
    one_line_error(invoke(tmp_path, "data", "--source", str(path)), "line 2", "not valid JSON")


def test_size_larger_than_dataset(tmp_path):
    path = write_jsonl(tmp_path / "small.jsonl", tulu_rows(30))
    one_line_error(invoke(tmp_path, "data", "--source", str(path), "--sizes", "10k,40k"),
                   "40k needs 200 rows", "only 30")
    assert not (tmp_path / "results" / "smoke" / "data" / "small").exists()


def test_empty_dataset(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    one_line_error(invoke(tmp_path, "data", "--source", str(path)), "no rows")


def test_missing_toy_world_names_the_command(tmp_path):
    one_line_error(invoke(tmp_path, "data"), "kdtools --world smoke toy")


def test_toy_on_paper_world(tmp_path):
    one_line_error(invoke(tmp_path, "toy", world="paper"), "no `toy` section")


def test_negative_override(tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", tulu_rows(60))
    assert invoke(tmp_path, "data", "--source", str(path), "--name", "tulu", "--sizes", "10k").exit_code == 0
    one_line_error(invoke(tmp_path, "sft", "--model", "1b", "--data", "10k", "--max-steps", "0"),
                   "--max-steps must be positive")


def test_unwritable_output(tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", tulu_rows(60))
    assert invoke(tmp_path, "data", "--source", str(path), "--name", "tulu", "--sizes", "10k").exit_code == 0
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    one_line_error(invoke(tmp_path, "sft", "--model", "1b", "--data", "10k", "--out", str(blocker / "x" / "y")),
                   "cannot write")


def test_world_after_the_verb_as_the_issue_writes_it(tmp_path):
    """`kdtools sft --model 1b --data 10k --world toy` must mean the toy world, like the global form."""
    result = runner.invoke(app, ["sft", "--model", "1b", "--data", "10k", "--world", "toy",
                                 "--results", str(tmp_path)])
    one_line_error(result, "kdtools --world toy data")
    result = runner.invoke(app, ["--world", "paper", "data", "--world", "moon"])
    one_line_error(result, "unknown world 'moon'")


def test_world_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KDTOOLS_WORLD", "smoke")
    result = runner.invoke(app, ["--results", str(tmp_path), "sft", "--model", "1b", "--data", "939k"])
    one_line_error(result, "not defined in world 'smoke'")
