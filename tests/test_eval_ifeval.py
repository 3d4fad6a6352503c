"""lm-eval's real IFEval scoring runs offline with the punkt_tab data kdtools ships."""

import nltk
import pytest

from kdtools.evaluation.punkt import DATA, install_punkt


@pytest.fixture()
def ifeval_utils(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("nltk tried to download data")

    monkeypatch.setattr(nltk, "download", no_download)
    found = install_punkt()
    assert found.startswith(str(DATA)) or "punkt_tab" in found
    from lm_eval.tasks.ifeval import utils  # its import checks for punkt_tab

    return utils


def doc(instructions, kwargs, prompt="Write about the sea."):
    return {"key": 1, "prompt": prompt, "instruction_id_list": instructions, "kwargs": kwargs}


def test_sentence_count_and_word_count_checks_run_offline(ifeval_utils):
    d = doc(["length_constraints:number_sentences", "length_constraints:number_words"],
            [{"relation": "less than", "num_sentences": 3}, {"relation": "at least", "num_words": 5}])
    good = ifeval_utils.process_results(d, ["Dr. Smith sails at 5 p.m. every day. The sea is calm."])
    assert good["prompt_level_strict_acc"] is True and good["prompt_level_loose_acc"] is True
    bad = ifeval_utils.process_results(d, ["One. Two. Three. Four sentences here."])
    assert bad["prompt_level_strict_acc"] is False
    assert bad["inst_level_strict_acc"] == [False, True]


def test_loose_accuracy_forgives_a_preamble_line(ifeval_utils):
    d = doc(["change_case:english_lowercase"], [{}])
    out = ifeval_utils.process_results(d, ["Sure! Here it is:\nthe sea is calm and wide."])
    assert out["prompt_level_strict_acc"] is False
    assert out["prompt_level_loose_acc"] is True


def test_our_punkt_splits_common_abbreviations():
    install_punkt()
    tok = nltk.data.load("nltk:tokenizers/punkt/english.pickle")
    assert len(tok.tokenize("Mr. Lee met Dr. Smith at 5 p.m. today. Then he left, e.g. by car.")) == 2
