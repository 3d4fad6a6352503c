"""`kdtools annotate` and the domain-task methods built on it (Mix, two-stage), for real on the
smoke world: the task teacher answers synthetic inputs; GKD trains on human + synthetic data
(mix) or after a cross-entropy stage on the synthetic pairs (two_stage)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import kdtools, write_jsonl

pytestmark = pytest.mark.slow
TASK = "translation"


@pytest.fixture(scope="module")
def annotated(smoke_results):
    """Students' full-data SFT, the task teacher, and 16 synthetic inputs annotated by it."""
    r = smoke_results
    kdtools("data", "--task", TASK, results=r)
    for model in ("1b", "70b"):
        if not (r / "smoke" / "models" / model / "sft" / "general" / "full" / "run.json").is_file():
            kdtools("sft", "--model", model, "--data", "full", "--max-steps", "3", results=r)
    kdtools("sft", "--model", "70b", "--task", TASK, "--data", "full", "--max-steps", "3", results=r)
    rows = [{"id": f"synth_{TASK}_{i}", "task": TASK, "input": f"Tilouk braipim sheki {i}"} for i in range(16)]
    inputs = write_jsonl(r / "smoke" / "data" / "synth" / TASK / "10k.jsonl", rows)
    kdtools("annotate", "--task", TASK, "--inputs", str(inputs), "--max-new-tokens", "8", results=r)
    return r, inputs


def test_annotate_writes_pairs_in_messages_schema(annotated):
    r, inputs = annotated
    out = r / "smoke" / "data" / "annotated" / TASK / "70b" / "10k"
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["teacher_weights"].endswith(f"models/70b/sft/{TASK}/full")   # the task teacher
    assert run["config"]["sampling"]["temperature"] == 0.6                            # paper: T = 0.6
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert run["pairs"] == len(pairs) and run["pairs"] + run["dropped_empty"] == 16
    first = pairs[0]["messages"]
    assert first[0] == {"role": "user", "content": f"Translate from Amsi to English: Tilouk braipim sheki {pairs[0]['input_index']}"}
    assert first[1]["role"] == "assistant" and first[1]["content"]
    again = kdtools("annotate", "--task", TASK, "--inputs", str(inputs), "--max-new-tokens", "8", results=r)
    assert "up to date" in again.stderr


def test_mix_trains_gkd_on_human_plus_synthetic(annotated):
    r, _ = annotated
    kdtools("gkd", "--student", "1b", "--task", TASK, "--data", "full", "--method", "mix",
            "--synthetic", "5k", "--max-steps", "2", results=r)
    run = json.loads((r / "smoke" / "models" / "1b" / "mix" / TASK / "full+synthetic-5k" / "run.json").read_text())
    assert run["dims"]["method"] == "mix" and run["dims"]["synthetic"] == "5k"
    human = len((r / "smoke" / "data" / TASK / "full.jsonl").read_text().splitlines())
    synthetic = [json.loads(x) for x in (r / "smoke" / "data" / "annotated" / TASK / "70b" / "10k"
                                         / "synthetic-5k.jsonl").read_text().splitlines()]
    assert all(p["input_index"] < 8 for p in synthetic)          # 5k = the first 8 inputs (smoke)
    assert run["metrics"]["rows"] == human + len(synthetic)
    assert run["config"]["weights"].endswith("models/1b/sft/general/full")  # students start from full-Tulu SFT


def test_two_stage_is_ce_on_synthetic_then_gkd_on_human(annotated):
    r, _ = annotated
    kdtools("gkd", "--student", "1b", "--task", TASK, "--data", "full", "--method", "two_stage",
            "--synthetic", "10k", "--max-steps", "2", results=r)
    models = r / "smoke" / "models" / "1b"
    stage1 = json.loads((models / "synth_sft" / TASK / "full+synthetic-10k" / "run.json").read_text())
    stage2 = json.loads((models / "two_stage" / TASK / "full+synthetic-10k" / "run.json").read_text())
    assert stage1["verb"] == "synth_sft" and stage1["config"]["data_file"].endswith("synthetic-10k.jsonl")
    assert stage2["config"]["weights"].endswith("models/1b/synth_sft/translation/full+synthetic-10k")
    assert stage2["config"]["data_file"].endswith(f"data/{TASK}/full.jsonl")   # GKD on the human data
    assert stage2["dims"] == {"student": "1b", "method": "two_stage", "size": "full", "task": TASK,
                              "init": "sft", "teacher": "70b", "synthetic": "10k"}


@pytest.mark.parametrize("args,needle", [
    (("--method", "mix"), "--method mix is for domain tasks"),
    (("--task", TASK, "--method", "two_stage", "--synthetic", "7k"), "--synthetic 7k"),
    (("--synthetic", "5k"), "--synthetic goes with --method mix or two_stage"),
    (("--method", "blend"), "--method must be one of gkd, mix, two_stage"),
])
def test_bad_method_options(smoke_results, args, needle):
    proc = kdtools("gkd", "--student", "1b", "--data", "full", *args, results=smoke_results, check=False)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


def test_missing_synthetic_pool_names_the_commands(smoke_results):
    kdtools("data", "--task", "arc", results=smoke_results)
    proc = kdtools("gkd", "--student", "1b", "--task", "arc", "--data", "full", "--method", "mix",
                   "--synthetic", "5k", results=smoke_results, check=False)
    assert proc.returncode == 2
    assert "kdtools --world smoke synth --task arc --n 10k" in proc.stderr or "sft" in proc.stderr


def test_annotate_bad_inputs(smoke_results, tmp_path):
    missing = kdtools("annotate", "--task", TASK, "--inputs", str(tmp_path / "nope.jsonl"),
                      results=smoke_results, check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
