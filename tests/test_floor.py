"""`kdtools eval --model floor`: every benchmark's floor through the real CLI, lm-eval tasks and
scorers (smoke world), checked against what can be counted from the world's own files."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

from kdtools.evaluation import results
from kdtools.evaluation.floor import chance
from kdtools.evaluation.lmeval import BenchOutput
from tests.conftest import REPO, kdtools


def read_samples(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_floor_of_the_general_suite(fresh_smoke):
    kdtools("eval", "--model", "floor", "--suite", "general", results=fresh_smoke)
    out = fresh_smoke / "smoke" / "evals" / "floor" / "floor" / "general" / "none" / "general.json"
    doc = json.loads(out.read_text())
    results.validate(doc)
    assert (doc["model"], doc["method"], doc["task"], doc["size"], doc["backend"]) == (
        "floor", "floor", "general", "none", "floor")
    for bench, info in doc["benchmarks"].items():
        floor = info["floor"]
        assert set(floor["scores"]) <= {"copy", "empty", "majority", "stated", "chance"}, bench
        (metric,) = info["metrics"]
        # the floor is the best strategy, and the file says which
        assert doc["metrics"][metric] == max(floor["scores"].values()) == floor["scores"][floor["strategy"]]

    # BBH (exact match): answering its most frequent target everywhere scores that target's share,
    # counted here from the world's test file; saying nothing scores 0
    rows = [json.loads(line) for line in
            (fresh_smoke / "smoke" / "world" / "benchmarks" / "bbh" / "test.jsonl").read_text().splitlines()]
    target, count = Counter(r["target"] for r in rows).most_common(1)[0]
    bbh = doc["benchmarks"]["bbh"]["floor"]
    assert bbh["scores"]["majority"] == round(100 * count / len(rows), 2) and bbh["scores"]["empty"] == 0.0
    assert bbh["answers"] == {"kd_bbh": target}

    # the samples hold the winner's answers and per-item scores: they average to the metric
    samples = read_samples(out.with_name("general.samples.jsonl"))
    mine = [s for s in samples if s["benchmark"] == "bbh"]
    assert len(mine) == len(rows)
    assert abs(100 * sum(s["scores"]["exact_match"] for s in mine) / len(mine) - doc["metrics"]["bbh"]) < 0.01
    if bbh["strategy"] == "majority":
        assert {s["response"] for s in mine} == {target}

    # a rerun is up to date; --force redoes it
    again = kdtools("eval", "--model", "floor", "--suite", "general", results=fresh_smoke)
    assert "up to date" in again.stderr


def test_floor_of_summarization_copies_the_input(fresh_smoke):
    kdtools("data", "--task", "summarization", results=fresh_smoke)
    kdtools("eval", "--model", "floor", "--suite", "summarization", results=fresh_smoke)
    out = fresh_smoke / "smoke" / "evals" / "floor" / "floor" / "summarization" / "none" / "summarization.json"
    doc = json.loads(out.read_text())
    floor = doc["benchmarks"]["summarization"]["floor"]
    # echoing the dialogue shares words with its summary; saying nothing shares none
    assert floor["strategy"] == "copy" and floor["scores"]["copy"] > 0 and floor["scores"]["empty"] == 0.0
    samples = read_samples(out.with_name("summarization.samples.jsonl"))
    assert samples and all(s["response"] and s["response"] in s["prompt"] for s in samples)
    assert abs(sum(s["scores"]["rougeL"] for s in samples) / len(samples) - doc["metrics"]["rougeL"]) < 0.01


def test_floor_of_multiple_choice_by_loglikelihood_is_chance():
    """One request per option: each item scores 1/options (the expected accuracy of a uniform
    guess), lm-eval's metric their mean."""
    samples = [{"options": n, "scores": {"acc": 1.0, "acc_norm": 0.0}} for n in (4, 4, 5, 2)]
    out = BenchOutput("arc", metric=0.75, stderr=0.1, samples=samples)
    assert chance(SimpleNamespace(metric="acc,none"), out)
    assert out.metric == (0.25 + 0.25 + 0.2 + 0.5) / 4 and out.stderr is None
    assert [s["scores"]["acc"] for s in samples] == [0.25, 0.25, 0.2, 0.5] == [s["scores"]["acc_norm"] for s in samples]
    # generation (no options) is not multiple choice by log-likelihood
    gen = BenchOutput("bbh", metric=0.1, samples=[{"scores": {"exact_match": 1.0}}])
    assert not chance(SimpleNamespace(metric="exact_match,none"), gen) and gen.metric == 0.1


def test_floor_model_answers_by_strategy():
    """The copy answer is the last user turn of a few-shot chat, without the template's markup; the
    constant answers are per lm-eval task; every option of a multiple-choice item is equally likely."""
    from kdtools.evaluation.floor import _lm_class

    floor_lm = _lm_class()
    chat = [{"role": "user", "content": "Q: 2+2?"}, {"role": "assistant", "content": "4"},
            {"role": "user", "content": "Q: 3+3?"}]
    copy = floor_lm("copy")
    context = copy.apply_chat_template(chat)
    assert context == "Q: 3+3?"
    req = SimpleNamespace(args=(context, {"until": ["\n"]}), task_name="kd_bbh")
    answers = {"kd_bbh": "6"}
    assert [floor_lm(s, answers).generate_until([req])[0] for s in ("copy", "empty", "majority", "stated")] == [
        "Q: 3+3?", "", "6", "The answer is 6."]
    assert floor_lm("majority", answers).generate_until([SimpleNamespace(args=("x", {}), task_name="other")]) == [""]
    assert copy.loglikelihood([SimpleNamespace(args=("q", " a")), SimpleNamespace(args=("q", " b"))]) == [
        (0.0, False), (0.0, False)]


def test_cloze_multiple_choice_and_its_chance_floor(fresh_smoke, tmp_path):
    """The toy world's multiple choice (kd_*_cloze): the question alone, each option's text scored
    by log-likelihood, no letter generated; its floor is chance, 1/options per item."""
    from kdtools.evaluation import hooks

    text = (REPO / "workflow" / "config" / "smoke.yaml").read_text()
    for bench in ("gpqa", "mmlu_pro"):
        text = text.replace(f'task: kd_{bench}, metric: "acc,none"', f'task: kd_{bench}_cloze, metric: "acc_norm,none"')
    text = text.replace('task: kd_arc, metric: "acc,none"', 'task: kd_arc_cloze, metric: "acc_norm,none"')
    world = tmp_path / "smoke-cloze.yaml"
    world.write_text(text)
    kdtools("data", "--task", "arc", results=fresh_smoke, world=str(world))
    kdtools("eval", "--model", "floor", "--suite", "arc", results=fresh_smoke, world=str(world))
    floor_doc = json.loads((fresh_smoke / "smoke" / "evals" / "floor" / "floor" / "arc" / "none" / "arc.json").read_text())
    rows = [json.loads(line) for line in (fresh_smoke / "smoke" / "world" / "tasks" / "arc" / "test.jsonl").read_text().splitlines()]
    assert floor_doc["benchmarks"]["arc"]["floor"] == {"strategy": "chance", "scores": {"chance": floor_doc["metrics"]["accuracy"]},
                                                       "answers": {}}
    assert floor_doc["metrics"]["accuracy"] == round(100 * sum(1 / len(r["choices"]["text"]) for r in rows) / len(rows), 2)

    kdtools("eval", "--model", "1b", "--suite", "general", "--limit", "12", results=fresh_smoke, world=str(world))
    out = fresh_smoke / "smoke" / "evals" / "1b" / "base" / "general" / "none" / "general.json"
    doc = json.loads(out.read_text())
    assert doc["benchmarks"]["gpqa"]["task"] == "kd_gpqa_cloze" and doc["benchmarks"]["gpqa"]["n"] == 12
    samples = [s for s in read_samples(out.with_name("general.samples.jsonl")) if s["benchmark"] == "gpqa"]
    # one request per option: the question alone as context, the option's text as continuation
    assert all(s["options"] == 4 for s in samples)
    assert all("A." not in s["prompt"] and hooks.mc_bare_question(s["doc"]) in s["prompt"] for s in samples)
    assert abs(100 * sum(s["scores"]["acc_norm"] for s in samples) / 12 - doc["metrics"]["gpqa"]) < 0.01
