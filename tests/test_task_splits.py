"""The paper world's domain-task splits: `kdtools data --task` fetches train/dev/test from the hub
and cuts them as the paper does (Flores devtest 500 dev + 512 test, ...). The hub is not
reachable here, so the same code reads local folders laid out like the hub repositories
(README configs, split files) through the real `datasets.load_dataset`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, kdtools, write_jsonl

FLORES_README = """---
configs:
- config_name: {lang}
  data_files:
  - split: dev
    path: dev/{lang}.jsonl
  - split: devtest
    path: devtest/{lang}.jsonl
---
"""


def flores_repo(root: Path) -> Path:
    """openlanguagedata/flores_plus's layout: one config per language, dev and devtest splits."""
    repo = root / "flores_plus"
    text = {"asm_Beng": "অসমীয়া বাক্য {i}", "eng_Latn": "English sentence {i}"}
    readme = "---\nconfigs:\n"
    for lang, template in text.items():
        readme += FLORES_README.format(lang=lang).split("configs:\n")[1].split("---")[0]
        for split, n in (("dev", 12), ("devtest", 10)):
            ids = range(n) if lang == "asm_Beng" else reversed(range(n))   # zipped by id, not order
            write_jsonl(repo / split / f"{lang}.jsonl",
                        [{"id": i, "iso_639_3": lang[:3], "text": template.format(i=f"{split}-{i}")} for i in ids])
    (repo / "README.md").write_text(readme + "---\n")
    return repo


def dialogsum_repo(root: Path) -> Path:
    repo = root / "dialogsum"
    for split, n in (("train", 9), ("validation", 3), ("test", 4)):
        write_jsonl(repo / f"{split}.jsonl", [{"id": f"{split}_{i}", "dialogue": f"#Person1#: hi {i}\n#Person2#: hello",
                                               "summary": f"They greet {i}.", "topic": "greeting"} for i in range(n)])
    return repo


def arc_repo(root: Path) -> Path:
    repo = root / "ai2_arc"
    for split, n in (("train", 6), ("validation", 2), ("test", 7)):
        write_jsonl(repo / "ARC-Challenge" / f"{split}.jsonl", [
            {"id": f"{split}_{i}", "question": f"Which is {i}?",
             "choices": {"text": ["one", "two", "three", "four"], "label": ["1", "2", "3", "4"]}, "answerKey": "2"}
            for i in range(n)])
    readme = "---\nconfigs:\n- config_name: ARC-Challenge\n  data_files:\n" + "".join(
        f"  - split: {s}\n    path: ARC-Challenge/{s}.jsonl\n" for s in ("train", "validation", "test")) + "---\n"
    (repo / "README.md").write_text(readme)
    return repo


@pytest.fixture(scope="module")
def hub_world(tmp_path_factory) -> tuple[Path, Path]:
    """The paper world with its tasks: block pointed at the local hub-like folders."""
    root = tmp_path_factory.mktemp("hub")
    flores, dialogsum, arc = flores_repo(root), dialogsum_repo(root), arc_repo(root)
    raw = yaml.safe_load((REPO / "workflow" / "config" / "paper.yaml").read_text())
    raw["world"] = "hubtest"
    for split in ("train", "dev", "test"):
        raw["tasks"]["translation"][split]["hub"] = str(flores)
        raw["tasks"]["summarization"][split]["hub"] = str(dialogsum)
        raw["tasks"]["arc"][split]["hub"] = str(arc)
    raw["tasks"]["translation"]["dev"]["stop"] = 4          # 10 devtest rows: 4 dev + 6 test
    raw["tasks"]["translation"]["test"]["start"] = 4
    raw["tasks"]["summarization"]["train"]["stop"] = 5
    raw["tasks"]["arc"]["dev"]["stop"] = 3
    raw["tasks"]["arc"]["test"]["start"] = 3
    world = root / "hubtest.yaml"
    world.write_text(yaml.safe_dump(raw, allow_unicode=True))
    (root / "results").mkdir()
    return world, root / "results"


def splits(results: Path, task: str) -> dict[str, list[dict]]:
    folder = results / "hubtest" / "data" / task / "splits"
    return {s: [json.loads(x) for x in (folder / f"{s}.jsonl").read_text().splitlines()]
            for s in ("train", "dev", "test")}


def test_translation_splits_are_flores_dev_and_cut_devtest(hub_world):
    world, results = hub_world
    proc = kdtools("synth", "--task", "translation", "--n", "5k", results=results, world=str(world), check=False)
    assert proc.returncode == 2 and "kdtools --world hubtest data --task translation" in proc.stderr
    kdtools("data", "--task", "translation", results=results, world=str(world))
    got = splits(results, "translation")
    assert [len(got[s]) for s in ("train", "dev", "test")] == [12, 4, 6]
    assert got["test"][0] == {"id": 4, "sentence_asm_Beng": "অসমীয়া বাক্য devtest-4",
                              "sentence_eng_Latn": "English sentence devtest-4"}
    full = [json.loads(x) for x in (results / "hubtest" / "data" / "translation" / "full.jsonl").read_text().splitlines()]
    assert len(full) == 12
    assert {r["messages"][0]["content"] for r in full} == {
        f"Translate from Assamese to English: অসমীয়া বাক্য dev-{i}" for i in range(12)}
    # the splits are in place: synth now gets past them to its next need, the generator
    proc = kdtools("synth", "--task", "translation", "--n", "5k", results=results, world=str(world), check=False)
    assert proc.returncode == 2 and "kdtools --world hubtest sft --model 70b --data full" in proc.stderr


def test_dialogsum_and_arc_splits(hub_world):
    world, results = hub_world
    for task in ("dialogsum", "ARC-Challenge"):             # the datasets' names work as task names
        kdtools("data", "--task", task, results=results, world=str(world))
    summ, arc = splits(results, "summarization"), splits(results, "arc")
    assert [len(summ[s]) for s in ("train", "dev", "test")] == [5, 3, 4]      # train cut to the first n
    assert [len(arc[s]) for s in ("train", "dev", "test")] == [6, 3, 4]       # test = 3 dev + 4 test
    assert arc["test"][0]["id"] == "test_3" and arc["test"][0]["answerKey"] == "B"   # labels 1-4 -> A-D
    again = kdtools("data", "--task", "arc", results=results, world=str(world))
    assert "up to date" in again.stderr


def test_unreachable_hub_is_one_error_line(tmp_path):
    """The real paper world here: the hub is offline, so the fetch fails with the fix named."""
    proc = kdtools("data", "--task", "arc", results=tmp_path, world="paper", check=False,
                   env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: cannot load allenai/ai2_arc")
    assert "hub access" in lines[-1]
    assert not (tmp_path / "paper" / "data" / "arc" / "full.jsonl").exists()
