"""Rule-based IFEval / InFoBench checkers: gold responses pass, broken ones fail.

    python3 -m pytest tests/toy/test_checkers.py -q
"""

from __future__ import annotations

import re

import pytest

from kdtools.toy.checkers import check_ifeval, check_infobench
from kdtools.toy.constraints import (
    BULLETS,
    CAPITAL,
    END,
    KEYWORDS,
    LOWER,
    NO_COMMA,
    NUM_WORDS,
    QUOTATION,
)
from kdtools.toy.content import ContentSpec, build_content


@pytest.fixture(scope="module")
def benchmarks():
    return build_content(ContentSpec(n_instructions=10, n_it_instructions=10,
                                     n_pretrain_docs=10)).benchmarks


def rows(benchmarks, name):
    return benchmarks[name]["dev"] + benchmarks[name]["test"]


def broken(instruction_id: str, kwargs: dict, gold: str) -> str:
    """The gold response changed just enough to violate one instruction."""
    if instruction_id == CAPITAL:
        return gold.lower()
    if instruction_id == LOWER:
        return gold.upper()
    if instruction_id == KEYWORDS:
        for k in kwargs["keywords"]:
            gold = re.sub(k, "", gold, flags=re.IGNORECASE)
        return gold
    if instruction_id == NUM_WORDS:
        if kwargs["relation"] == "less than":
            return gold + " word" * kwargs["num_words"]
        return "No"
    if instruction_id == END:
        return gold + " Bye"
    if instruction_id == BULLETS:
        return gold + "\n* one more point"
    if instruction_id == NO_COMMA:
        return gold.replace(" ", ", ", 1)
    if instruction_id == QUOTATION:
        return gold.strip('"')
    raise AssertionError(instruction_id)


def test_ifeval_gold_passes_every_row(benchmarks):
    for row in rows(benchmarks, "ifeval"):
        result = check_ifeval(row, row["gold"])
        assert result["strict"] and result["loose"], (row, result)
        assert result["per_instruction"] == [True] * len(row["instruction_id_list"])


def test_ifeval_broken_response_fails_the_broken_instruction(benchmarks):
    for row in rows(benchmarks, "ifeval"):
        for i, (iid, kw) in enumerate(zip(row["instruction_id_list"], row["kwargs"], strict=True)):
            result = check_ifeval(row, broken(iid, kw, row["gold"]))
            assert not result["strict"] and not result["per_instruction"][i], (iid, row)


def test_ifeval_loose_forgives_a_preamble_and_asterisks():
    row = {"instruction_id_list": [CAPITAL, QUOTATION], "kwargs": [{}, {}]}
    response = 'Sure, here it is:\n"**THE CITY IS RED.**"'
    result = check_ifeval(row, response)
    assert not result["strict"] and result["loose"]
    assert result["per_instruction"] == [False, False]


def test_ifeval_semantics():
    def ok(iid, kw, text):
        return check_ifeval({"instruction_id_list": [iid], "kwargs": [kw]}, text)["strict"]

    assert ok(NUM_WORDS, {"relation": "less than", "num_words": 4}, "one two three")
    assert not ok(NUM_WORDS, {"relation": "less than", "num_words": 3}, "one two three")
    assert ok(NUM_WORDS, {"relation": "at least", "num_words": 3}, "one two three")
    assert ok(END, {"end_phrase": "Any other questions?"}, '"ok. any other questions?"')
    assert ok(BULLETS, {"num_bullets": 2}, "* a\n- b\ntext")
    assert not ok(BULLETS, {"num_bullets": 2}, "* a\n** b")
    assert ok(KEYWORDS, {"keywords": ["calm"]}, "It was CALM.")
    assert not ok(NO_COMMA, {}, "a, b")
    assert not ok(CAPITAL, {}, "") and not ok(QUOTATION, {}, '"')


def test_infobench_gold_passes_and_a_wrong_answer_fails(benchmarks):
    for row in rows(benchmarks, "infobench"):
        assert check_infobench(row, row["gold"]) == [True] * len(row["checks"]), row
        assert not all(check_infobench(row, "OK."))


def test_infobench_each_requirement_can_fail_alone(benchmarks):
    """Every check decides its own question: changing the gold for one rule flips that rule."""
    for row in rows(benchmarks, "infobench"):
        gold = row["gold"]
        for i, check in enumerate(row["checks"]):
            kind = check["type"]
            if kind == "contains":
                wrong = re.sub(re.escape(check["text"]), "someone", gold, flags=re.IGNORECASE)
            elif kind == "not_contains":
                wrong = gold + f" It has a pet {check['text']}."
            elif kind == "starts_with":
                wrong = "Hello. " + gold
            elif kind == "ends_with":
                wrong = gold[:-1] + "."
            elif kind == "sentence_count":
                wrong = gold + " That is all."
            elif kind == "max_words":
                wrong = gold + " very" * check["n"]
            elif kind == "lowercase":
                wrong = gold.upper()
            else:
                wrong = gold.lower()
            assert not check_infobench(row, wrong)[i], (check, wrong)
