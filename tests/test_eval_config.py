"""The worlds' `eval:` sections, the task templates and the hub loaders (no model, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdtools import tasks
from kdtools.errors import KdError
from kdtools.evaluation import hooks, sources
from kdtools.evaluation.config import Benchmark, load_spec
from kdtools.world import load_world

PAPER_COLUMNS = ["bbh", "gpqa", "mmlu_pro", "ifeval", "infobench"]


@pytest.mark.parametrize("name", ["paper", "toy", "smoke"])
def test_every_world_has_the_four_suites(name):
    spec = load_spec(load_world(name))
    assert spec.suite_names == ["general", "translation", "summarization", "arc"]
    assert [b.name for b in spec.suite("general")] == PAPER_COLUMNS


def test_paper_world_uses_lm_eval_tasks_that_exist():
    import lm_eval

    root = Path(lm_eval.__file__).parent / "tasks"
    text = "\n".join(p.read_text(errors="replace") for p in root.rglob("*.yaml")
                     if p.parent.name in ("cot_fewshot", "cot_zeroshot", "mmlu_pro", "ifeval"))
    spec = load_spec(load_world("paper"))
    for bench in spec.suite("general"):
        if not bench.template:
            assert f"task: {bench.task}\n" in text or f"group: {bench.task}\n" in text, bench.task


def test_templates_render_the_training_prompts():
    hooks.LANGUAGE = "Amsi"
    row = {"sentence_asm_Beng": "Zakoun thebrai.", "sentence_eng_Latn": "The door."}
    assert hooks.translation_text(row) == tasks.prompt("translation", row, "Amsi")
    arc = {"question": "Q?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}
    assert hooks.arc_text(arc) == tasks.prompt("arc", arc) and hooks.mc_target(arc) == "B"
    gpqa = {"Question": "Q?", "Correct Answer": "right", "Incorrect Answer 1": "w1",
            "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3"}
    options, at = hooks.gpqa_options(gpqa)
    assert options[at] == "right" and sorted(options) == ["right", "w1", "w2", "w3"]
    assert hooks.gpqa_options(gpqa) == (options, at)  # stable
    assert hooks.score_letter(gpqa, ["ABCD"[at]])["acc"] == 1.0


def test_flores_pairs_and_arc_letters():
    src = [{"id": 2, "text": "b-as"}, {"id": 1, "text": "a-as"}]
    tgt = [{"id": 1, "text": "a-en"}, {"id": 2, "text": "b-en"}]
    rows = sources.flores_pairs(src, tgt, "asm_Beng", "eng_Latn")
    assert rows == [{"id": 1, "sentence_asm_Beng": "a-as", "sentence_eng_Latn": "a-en"},
                    {"id": 2, "sentence_asm_Beng": "b-as", "sentence_eng_Latn": "b-en"}]
    with pytest.raises(KdError, match="no eng_Latn pair"):
        sources.flores_pairs(src, tgt[:1], "asm_Beng", "eng_Latn")
    arc = sources.arc_letters({"id": "x", "question": "Q", "answerKey": "3",
                               "choices": {"text": ["a", "b", "c", "d"], "label": ["1", "2", "3", "4"]}})
    assert arc["answerKey"] == "C" and arc["choices"]["label"] == ["A", "B", "C", "D"]


def test_bad_eval_sections_are_refused(tmp_path):
    import yaml

    raw = yaml.safe_load((Path(__file__).parents[1] / "workflow/config/smoke.yaml").read_text())
    raw["eval"]["suites"]["arc"]["arc"]["task"] = "kd_nope"
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(KdError, match="no task template 'kd_nope'"):
        load_spec(load_world(str(path)))
    del raw["eval"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(KdError, match="no `eval` section"):
        load_spec(load_world(str(path)))


def test_benchmark_scoring_kinds():
    assert Benchmark("infobench", "kd_infobench").scoring == "judge"
    assert Benchmark("translation", "kd_translation").scoring == "translation"
    assert Benchmark("bbh", "bbh_cot_fewshot", metric="exact_match,get-answer").scoring == "lmeval"
    assert Benchmark("arc", "kd_arc", report="accuracy").metric_key == "accuracy"
