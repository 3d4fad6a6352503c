"""Metric functions against hand-computed values, and their invariants."""

import pytest

from kdtools.evaluation import metrics


@pytest.mark.parametrize("text,n,expected", [
    ("B", 4, "B"),
    ("B.", 4, "B"),
    ("(C) because ...", 4, "C"),
    ("The answer is (D).", 4, "D"),
    ("so the answer is J", 10, "J"),
    ("A horse eats grass.", 4, None),      # 'A' as an article is not a letter
    ("E", 4, None),                         # out of range for 4 options
    ("", 4, None),
    ("I think (A) or maybe (B)", 4, "B"),  # the last parenthesised letter
])
def test_extract_letter(text, n, expected):
    assert metrics.extract_letter(text, n) == expected


def test_letter_accuracy_hand_computed():
    # 2 of 3 right -> 66.67
    assert metrics.letter_accuracy(["A", "the answer is (B)", "C"], ["A", "B", "D"], [4, 4, 4]) == 66.67


def test_exact_match_normalises_case_punctuation_and_first_line():
    assert metrics.exact_match("Moon.\nextra words", "moon")
    assert metrics.exact_match("The answer is 40", "40")
    assert not metrics.exact_match("41", "40")
    assert not metrics.exact_match("", "40")


def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat on mat") = 4 tokens: P = 4/4, R = 4/6, F = 0.8
    assert metrics.rouge_l(["the cat on mat"], ["the cat sat on the mat"]) == 80.0
    assert metrics.rouge_l(["same words here"], ["same words here"]) == 100.0
    assert metrics.rouge_l(["x y"], ["a b"]) == 0.0


def test_chrf_bounds_and_corpus_level():
    assert metrics.chrf(["the red horse"], ["the red horse"]) == 100.0
    assert metrics.chrf(["zzzz"], ["abcd"]) == 0.0
    # corpus chrF pools n-gram statistics: not the mean of sentence scores
    hyps, refs = ["the cat sat", "a dog"], ["the cat sat down", "the dog runs away fast"]
    pooled = metrics.chrf(hyps, refs)
    mean_of_sentences = sum(metrics.sentence_chrf(h, r) for h, r in zip(hyps, refs, strict=True)) / 2
    assert 0 < pooled < 100 and pooled != pytest.approx(mean_of_sentences, abs=0.01)
    assert metrics.chrf([], []) is None


def test_drfr_pools_requirements_and_counts_none_as_unsatisfied():
    # 3 of 6 requirements: [yes, no, yes] + [no] + [None, yes]
    assert metrics.drfr([[True, False, True], [False], [None, True]]) == 50.0
    assert metrics.drfr([[True], [True, True]]) == 100.0
    assert metrics.drfr([]) is None


def test_percent_and_mean():
    assert metrics.percent(0.12345) == 12.35
    assert metrics.percent(None) is None
    assert metrics.mean([]) is None
