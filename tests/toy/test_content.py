"""The toy world's generated text: counts, schemas, determinism, held-out sets, lengths.

    python3 -m pytest tests/toy -q
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import asdict, replace

import pytest

from kdtools.errors import KdError
from kdtools.tasks import mc_prompt
from kdtools.toy.constraints import IFEVAL_IDS, TOPIC_PROMPTS, infobench_prompt
from kdtools.toy.content import ContentSpec, build_content, build_sources
from kdtools.toy.knowledge import ATTRS, QUESTIONS, STATEMENTS
from kdtools.toy.language import ADJECTIVES, INTRANSITIVE, NOUNS, PREPOSITIONS, TRANSITIVE
from kdtools.toy.tasks import task_prompt

SMALL = ContentSpec(seed=3, n_entities=24, n_instructions=600, n_it_instructions=200,
                    n_pretrain_docs=800, bench_dev=10, bench_test=40, task_train=30, task_dev=10,
                    task_test=20)


@pytest.fixture(scope="module")
def content():
    return build_content(ContentSpec())


def dump(c) -> str:
    return json.dumps(asdict(c), sort_keys=True)


def user_texts(rows) -> list[str]:
    return [m["content"] for r in rows for m in r["messages"] if m["role"] == "user"]


def benchmark_prompts(c, split: str) -> dict[str, list[str]]:
    """What a model is shown for each held-out row, per benchmark / task."""
    b, t = c.benchmarks, c.tasks
    return {
        "bbh": [r["input"] for r in b["bbh"][split]],
        "gpqa": [r["Question"] for r in b["gpqa"][split]],
        "mmlu_pro": [r["question"] for r in b["mmlu_pro"][split]],
        "ifeval": [r["prompt"] for r in b["ifeval"][split]],
        "infobench": [infobench_prompt(r) for r in b["infobench"][split]],
        "translation": [task_prompt("translation", r)[0] for r in t["translation"][split]],
        "summarization": [r["dialogue"] for r in t["summarization"][split]],
        "arc": [task_prompt("arc", r)[0] for r in t["arc"][split]],
    }


def test_exact_counts(content):
    spec = ContentSpec()
    assert len(content.pretrain_texts) == spec.n_pretrain_docs
    assert len(content.instructions) == spec.n_instructions
    assert len(content.it_instructions) == spec.n_it_instructions
    assert sorted(content.benchmarks) == ["bbh", "gpqa", "ifeval", "infobench", "mmlu_pro"]
    for splits in content.benchmarks.values():
        assert {k: len(v) for k, v in splits.items()} == {"dev": 50, "test": 200}
    assert sorted(content.tasks) == ["arc", "summarization", "translation"]
    for splits in content.tasks.values():
        assert {k: len(v) for k, v in splits.items()} == {"train": 300, "dev": 100, "test": 200}


def test_small_spec_counts_are_exact():
    c = build_content(SMALL)
    assert (len(c.pretrain_texts), len(c.instructions), len(c.it_instructions)) == (800, 600, 200)
    assert all(len(s["dev"]) == 10 and len(s["test"]) == 40 for s in c.benchmarks.values())
    for s in c.tasks.values():
        assert [len(s[k]) for k in ("train", "dev", "test")] == [30, 10, 20]


def test_spec_is_validated():
    with pytest.raises(KdError):
        ContentSpec(n_entities=5)
    with pytest.raises(KdError):
        ContentSpec(bench_test=-1)


@pytest.mark.parametrize("pool", ["instructions", "it_instructions"])
def test_instruction_schema(content, pool):
    rows = getattr(content, pool)
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    two_turn = system = 0
    for r in rows:
        assert set(r) == {"id", "messages", "source"}
        skill = r["source"].removeprefix("toy/")
        assert r["source"].startswith("toy/") and re.fullmatch(rf"toy_{skill}_\d+", r["id"])
        roles = [m["role"] for m in r["messages"]]
        if roles[0] == "system":
            system += 1
            roles = roles[1:]
        assert roles in (["user", "assistant"], ["user", "assistant"] * 2)
        two_turn += len(roles) == 4
        assert all(set(m) == {"role", "content"} and isinstance(m["content"], str)
                   and m["content"].strip() for m in r["messages"])
    assert 0.06 < two_turn / len(rows) < 0.14
    assert 0.02 < system / len(rows) < 0.08
    assert set(content.instructions[0]) == set(content.it_instructions[0])
    student, it = content.instructions, content.it_instructions
    assert {r["source"] for r in student} == {r["source"] for r in it}


def test_benchmark_schemas(content):
    b = content.benchmarks
    for split in ("dev", "test"):
        for r in b["bbh"][split]:
            assert set(r) == {"input", "target", "task"}
            assert all(isinstance(v, str) for v in r.values())
        for r in b["gpqa"][split]:
            answers = [r["Correct Answer"]] + [r[f"Incorrect Answer {i}"] for i in (1, 2, 3)]
            assert set(r) == {"Question", "Correct Answer", "Incorrect Answer 1",
                              "Incorrect Answer 2", "Incorrect Answer 3", "Subdomain"}
            assert len(set(answers)) == 4 and all(isinstance(a, str) for a in answers)
        for r in b["mmlu_pro"][split]:
            assert set(r) == {"question_id", "question", "options", "answer", "answer_index",
                              "category", "src"}
            assert isinstance(r["question_id"], int) and len(r["options"]) == 10
            assert len(set(r["options"])) == 10
            assert "ABCDEFGHIJ"[r["answer_index"]] == r["answer"]
        for r in b["ifeval"][split]:
            assert set(r) == {"key", "prompt", "instruction_id_list", "kwargs", "gold"}
            assert isinstance(r["key"], int) and 1 <= len(r["instruction_id_list"]) <= 3
            assert len(r["kwargs"]) == len(r["instruction_id_list"])
            assert set(r["instruction_id_list"]) <= set(IFEVAL_IDS)
            assert all(isinstance(k, dict) for k in r["kwargs"])
        for r in b["infobench"][split]:
            assert set(r) == {"id", "input", "instruction", "decomposed_questions", "subset",
                              "question_label", "checks", "gold"}
            assert r["subset"] in ("Easy_set", "Hard_set")
            n = len(r["decomposed_questions"])
            assert n >= 2 and len(r["checks"]) == n and len(r["question_label"]) == n
            assert all(isinstance(q, str) for q in r["decomposed_questions"])
            assert all(isinstance(lab, list) and lab for lab in r["question_label"])
    keys = [r["key"] for s in b["ifeval"].values() for r in s]
    qids = [r["question_id"] for s in b["mmlu_pro"].values() for r in s]
    assert len(set(keys)) == len(keys) and len(set(qids)) == len(qids)


def test_task_schemas(content):
    t = content.tasks
    for split in ("train", "dev", "test"):
        for r in t["translation"][split]:
            assert set(r) == {"id", "sentence_asm_Beng", "sentence_eng_Latn"}
            assert isinstance(r["id"], int)
        for r in t["summarization"][split]:
            assert set(r) == {"id", "dialogue", "summary", "topic"}
            assert r["id"].startswith(f"{split}_")
            turns = r["dialogue"].split("\n")
            assert 4 <= len(turns) <= 8 and all(re.match(r"#Person[12]#: ", x) for x in turns)
        for r in t["arc"][split]:
            assert set(r) == {"id", "question", "choices", "answerKey"}
            assert r["choices"]["label"] == ["A", "B", "C", "D"]
            assert len(set(r["choices"]["text"])) == 4 and r["answerKey"] in "ABCD"


def test_same_spec_same_output_and_seed_matters():
    assert dump(build_content(SMALL)) == dump(build_content(SMALL))
    assert dump(build_content(replace(SMALL, seed=4))) != dump(build_content(SMALL))


def test_identical_across_processes_and_hash_seeds():
    code = ("import hashlib, json; from dataclasses import asdict;"
            "from kdtools.toy.content import ContentSpec, build_content;"
            f"c = build_content(ContentSpec(**{asdict(SMALL)!r}));"
            "print(hashlib.sha256(json.dumps(asdict(c), sort_keys=True).encode()).hexdigest())")
    digests = set()
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, cwd=os.getcwd())
        digests.add(out.stdout.strip())
    digests.add(hashlib.sha256(dump(build_content(SMALL)).encode()).hexdigest())
    assert len(digests) == 1


def test_no_held_out_prompt_in_training_text(content):
    training = "\n".join([m["content"] for r in content.instructions + content.it_instructions
                          for m in r["messages"]] + content.pretrain_texts)
    for split in ("dev", "test"):
        for name, prompts in benchmark_prompts(content, split).items():
            leaked = [p for p in prompts if p in training]
            assert not leaked, f"{name} {split}: {leaked[:3]}"
    for r in content.tasks["translation"]["test"]:
        assert r["sentence_asm_Beng"] not in training
    for r in content.tasks["arc"]["test"]:
        assert r["question"] not in "\n".join(content.pretrain_texts)


def test_task_and_benchmark_splits_disjoint(content):
    for name, prompts in benchmark_prompts(content, "test").items():
        dev = set(benchmark_prompts(content, "dev")[name])
        assert not dev & set(prompts), name
    for name in ("translation", "summarization", "arc"):
        seen = [task_prompt(name, r)[0] for s in ("train", "dev", "test")
                for r in content.tasks[name][s]]
        assert len(set(seen)) == len(seen), name


def test_it_pool_is_disjoint_from_student_pool(content):
    student, it = set(user_texts(content.instructions)), set(user_texts(content.it_instructions))
    assert not student & it
    as_json = {json.dumps(r["messages"]) for r in content.instructions}
    assert not as_json & {json.dumps(r["messages"]) for r in content.it_instructions}


def test_lengths(content):
    rows = content.instructions + content.it_instructions
    sizes = [sum(len(m["content"]) for m in r["messages"]) for r in rows]
    assert max(sizes) <= 600 and 40 <= statistics.median(sizes) <= 250
    assert max(len(d) for d in content.pretrain_texts) <= 600
    for split in ("dev", "test"):
        for r in content.benchmarks["ifeval"][split]:
            assert len(r["prompt"]) + len(r["gold"]) <= 600
        for r in content.benchmarks["infobench"][split]:
            assert len(infobench_prompt(r)) + len(r["gold"]) <= 600
    for s in content.tasks["summarization"].values():
        assert all(len(r["dialogue"]) <= 500 and len(r["summary"]) <= 200 for r in s)


def parse_english(sentence: str) -> list[str]:
    """English words in Amsi order (noun before adjective, postposition, verb last)."""
    words = [w for w in sentence.rstrip(".").lower().split() if w != "the"]

    def phrase(i):
        if words[i] in ADJECTIVES:
            return [words[i + 1], words[i]], i + 2
        return [words[i]], i + 1

    out, i = phrase(0)
    verb = words[i]
    assert verb in TRANSITIVE + INTRANSITIVE
    i += 1
    if i < len(words) and words[i] not in PREPOSITIONS:
        obj, i = phrase(i)
        out += obj
    if i < len(words):
        prep = words[i]
        place, i = phrase(i + 1)
        out += place + [prep]
    assert i == len(words)
    return out + [verb]


def test_translation_lexicon_is_consistent(content):
    lexicon: dict[str, str] = {}
    for split in content.tasks["translation"].values():
        for r in split:
            english = parse_english(r["sentence_eng_Latn"])
            amsi = r["sentence_asm_Beng"].rstrip(".").lower().split()
            assert len(english) == len(amsi)
            for e, a in zip(english, amsi, strict=True):
                assert lexicon.setdefault(e, a) == a, (e, a, lexicon[e])
    assert len(set(lexicon.values())) == len(lexicon)
    assert set(lexicon) <= set(NOUNS + ADJECTIVES + TRANSITIVE + INTRANSITIVE + PREPOSITIONS)
    entries = re.findall(r"In Amsi the word for (\w+) is (\w+)\.", " ".join(content.pretrain_texts))
    assert entries and all(lexicon.get(e, a) == a for e, a in entries)


def test_every_fact_is_stated_often_in_pretraining(content):
    world, _, _ = build_sources(0, 60)
    corpus = "\n".join(content.pretrain_texts)
    for fact in world.facts:
        mentions = sum(corpus.count(fact.statement(i)) for i in range(len(STATEMENTS[fact.attr])))
        assert mentions >= 30, (fact, mentions)


def test_bench_entities_are_never_asked_about_in_instructions(content):
    world, _, _ = build_sources(0, 60)
    text = "\n".join(user_texts(content.instructions + content.it_instructions))
    for kind in ("person", "city", "country"):
        for e in world.entities(kind, "bench"):
            asks = [t.format(e=e) for attr in ATTRS[kind] for t in QUESTIONS[attr]]
            asks += [t.format(e=e) for t in TOPIC_PROMPTS] + [f"Name: {e}\n"]
            assert not [a for a in asks if a in text], e


def test_symbolic_targets_are_right(content):
    for split in content.benchmarks["bbh"].values():
        for r in split:
            m = re.fullmatch(r"Start with (\d+)\. Add (\d+), then subtract (\d+)\. .*", r["input"])
            if m:
                a, b, c = map(int, m.groups())
                assert r["target"] == str(a + b - c)
            m = re.fullmatch(r"(Reverse|Sort) the list (.*?)( alphabetically)?, then give the "
                             r"(first|last|second) item\.", r["input"])
            if m:
                items = m.group(2).split(", ")
                ordered = items[::-1] if m.group(1) == "Reverse" else sorted(items)
                assert r["target"] == {"first": ordered[0], "last": ordered[-1],
                                       "second": ordered[1]}[m.group(4)]


def test_mc_prompt_layout():
    text = mc_prompt("Which?", ["x", "y"])
    assert text == "Which?\nA. x\nB. y\nAnswer with the letter of the correct option."
