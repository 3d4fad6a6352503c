"""`kdtools synth`: the filters on their own, then the verb for real on the smoke world, with a
generator that has learned to write task inputs and with one that writes noise; and the paper's
whole synthetic path: synth -> annotate -> two-stage and Mix."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest
from typer.testing import CliRunner

from kdtools.synthfilters import (
    FILTERS,
    InputFilter,
    NearDuplicateIndex,
    extract_input,
    is_degenerate,
    jaccard,
    lsh_params,
    min_words_for,
    shingles,
)
from tests.conftest import copy_smoke_world, kdtools, one_line_error

TASK = "translation"


# --- extraction and filters ------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("  Kedram tranu poutun.  ", "Kedram tranu poutun."),
    ("In: Kedram tranu poutun.\nOut: The bird hears.", "Kedram tranu poutun."),
    ('Input: "Kedram tranu poutun."', "Kedram tranu poutun."),
    ("Kedram tranu.\n\nIn: Mibre driler.", "Kedram tranu."),
    ("“Mibre driler nunek.”", "Mibre driler nunek."),
    ("Out: the answer only", ""),
])
def test_extract_input_keeps_the_new_input_alone(raw, expected):
    assert extract_input(raw) == expected


@pytest.mark.parametrize("text,bad", [
    ("Kedram tranu poutun gatrir.", False),
    ("Kedram", True),                                   # fewer than min_words
    ("Kedram tranu \ufffd poutun", True),               # bytes that were not UTF-8
    ("Kedram\x07 tranu poutun", True),                  # control character
    ("#### !!!! ???? ;;;; a", True),                    # mostly punctuation
    ("tranu tranu tranu tranu tranu tranu tranu tranu", True),  # repetitive
])
def test_degenerate(text, bad):
    assert is_degenerate(text, min_words=2) is bad


def test_each_filter_removes_what_it_names_and_counts_add_up():
    train = ["Kedram tranu poutun gatrir.", "Mibre driler nunek librer."]
    heldout = ["Kralek kedram lizik tranu lomos doubom zibu."]
    f = InputFilter(train, heldout, ngram=4, near_duplicate=0.8, min_words=min_words_for(train))
    candidates = {
        "": "empty",
        "Kedram": "degenerate",
        "kedram  TRANU poutun gatrir.": "duplicate",           # a training input, case/space aside
        "Voukrain likranu trer liror doumak.": None,
        "Voukrain likranu trer liror doumak!": "near_duplicate",
        "Gisiri lizik tranu lomos doubom.": "contaminated",     # 'lizik tranu lomos doubom' is in test
        "Gisiri brelan fozum koutra.": None,
    }
    reasons = [f.admit(text) for text in candidates]
    assert reasons == list(candidates.values())
    assert set(reasons) - {None} == set(FILTERS)
    assert f.admit("Voukrain likranu trer liror doumak.") == "duplicate"  # kept ones count too


def test_near_duplicate_index_agrees_with_exact_jaccard():
    """LSH finds every stored text at or above the threshold (verified exactly) and nothing below."""
    rng = random.Random(3)
    syllables = ["ke", "dram", "tra", "nu", "pou", "tun", "mi", "bre", "dri", "ler", "zi", "bu"]
    texts = [" ".join("".join(rng.choices(syllables, k=3)) for _ in range(8)) for _ in range(60)]
    variants = [t[:-3] + "xyz" for t in texts[:20]] + [t[::-1] for t in texts[20:30]]
    index = NearDuplicateIndex(0.8)
    for t in texts:
        assert index.query(t)[0] is None or jaccard(shingles(t), shingles(texts[index.query(t)[0]])) >= 0.8
        index.insert(t, index.signature(t))
    for v in variants:
        match, _ = index.query(v)
        best = max(jaccard(shingles(v), shingles(t)) for t in texts)
        assert (match is not None) == (best >= 0.8), (v, best)
    bands, rows = lsh_params(0.8)
    assert bands * rows <= 128 and 1 - (1 - 0.8 ** rows) ** bands >= 0.99


def test_prompt_is_instruction_demos_then_in():
    from kdtools.synth import INSTRUCTION, render_prompt, round_size

    text = render_prompt(INSTRUCTION, [("x1", "y1"), ("x2", "y2")])
    assert "given 2 demonstrations" in text and text.endswith("In: x2\nOut: y2\n\nNow, generate exactly one "
                                                               "brand-new input message that follows the same "
                                                               "task and formatting.\nOutput only the input "
                                                               "message content itself. Do not output any "
                                                               "answer or extra text.\n\nIn:")
    assert render_prompt("Write more.", [("a", "b")]) == "Write more.\n\nIn: a\nOut: b\n\nIn:"   # Eq. 4
    assert round_size(100, 0, 0) == 160                 # first round: assumed keep rate 0.75, +20%
    assert round_size(100, 100, 50) == 240              # half kept so far: 2.4 prompts per input
    assert round_size(1, 100, 50) == 16                 # never under one batch


# --- the verb, for real ----------------------------------------------------------------------

def test_bad_input_is_one_line_before_any_work(fresh_smoke):
    from kdtools.cli import app

    runner = CliRunner()
    base = ["--world", "smoke", "--results", str(fresh_smoke), "synth"]
    one_line_error(runner.invoke(app, [*base, "--task", TASK, "--n", "7k"]), "synthetic size '7k'", "5k, 10k")
    one_line_error(runner.invoke(app, [*base, "--task", "poetry", "--n", "5k"]), "poetry")
    one_line_error(runner.invoke(app, [*base, "--task", TASK, "--n", "5k"]),
                   "kdtools --world smoke sft --model 70b --data full")
    one_line_error(runner.invoke(app, [*base, "--task", TASK, "--n", "5k", "--generator", "nowhere"]),
                   "unknown generator 'nowhere'")
    assert not (fresh_smoke / "smoke" / "data" / "synth").exists()


@pytest.fixture(scope="module")
def synth_world(tmp_path_factory, smoke_results):
    """A results root with translation data and a generator: the smoke 70b fine-tuned for 150
    steps on synth prompts (instruction + 3 demonstrations) answered by another training input,
    which is how an instruction-tuned model meets Eq. 4. Then `kdtools synth` up to 10k."""
    from kdtools import sft, synth, tasks
    from kdtools.data import read_jsonl
    from kdtools.world import load_world

    r = copy_smoke_world(smoke_results, tmp_path_factory.mktemp("synth") / "results")
    kdtools("data", "--task", TASK, results=r)
    world = load_world("smoke", r)
    instruction = synth.SynthSettings.from_world(world).instruction
    rows = read_jsonl(tasks.split_file(world, TASK, "train"))
    xs = [tasks.input_text(TASK, row) for row in rows]
    ys = [tasks.reference(TASK, row) for row in rows]
    rng = random.Random(0)
    lines = []
    for _ in range(400):
        *shots, answer = rng.sample(range(len(xs)), 4)
        prompt = synth.render_prompt(instruction, [(xs[i], ys[i]) for i in shots])
        lines.append(json.dumps({"messages": [{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": " " + xs[answer]}]}) + "\n")
    (r / "generator.jsonl").write_text("".join(lines))
    job = sft.make_job(world, "70b", "full", out=r / "generator", max_steps=150)
    sft.run(dataclasses.replace(job, data_file=r / "generator.jsonl",
                                train=dataclasses.replace(job.train, max_length=512)))
    proc = kdtools("synth", "--task", TASK, "--n", "10k", "--generator", str(r / "generator"), results=r)
    return r, proc


def test_synth_writes_nested_filtered_sizes(synth_world):
    r, proc = synth_world
    out = r / "smoke" / "data" / "synth" / TASK
    run = json.loads((out / "run.json").read_text())
    assert run["generated"] == run["kept"] + sum(run["removed"].values())
    pool = [json.loads(x) for x in (out / "inputs.jsonl").read_text().splitlines()]
    assert len(pool) == run["kept"] >= 16 and run["shortfall"] is None
    assert [p["id"] for p in pool] == [f"synth_{TASK}_{i}" for i in range(len(pool))]
    five, ten = ((out / f"{s}.jsonl").read_text().splitlines() for s in ("5k", "10k"))
    assert len(five) == 8 and len(ten) == 16 and ten[:8] == five          # nested prefixes
    assert set(run["sizes"]) == {"5k", "10k"}
    train = {json.loads(x)["messages"][0]["content"].split(": ", 1)[1].lower()
             for x in (r / "smoke" / "data" / TASK / "full.jsonl").read_text().splitlines()}
    texts = [p["input"] for p in pool]
    assert len({t.lower() for t in texts}) == len(texts) and not train & {t.lower() for t in texts}
    assert all(re.fullmatch(r"[\w\s.,;:'!?-]+", t) for t in texts)          # words, not byte noise
    assert run["config"]["sampling"]["temperature"] == 0.8 and run["config"]["demos"] == 3


def test_synth_rerun_smaller_size_and_force_are_deterministic(synth_world):
    r, _ = synth_world
    out = r / "smoke" / "data" / "synth" / TASK
    gen = ("--generator", str(r / "generator"))
    stamp, pool = (out / "run.json").stat().st_mtime_ns, (out / "inputs.jsonl").read_text()
    for size in ("10k", "5k"):
        assert "up to date" in kdtools("synth", "--task", TASK, "--n", size, *gen, results=r).stderr
    assert (out / "run.json").stat().st_mtime_ns == stamp
    other = kdtools("synth", "--task", TASK, "--n", "5k", results=r, check=False)   # the default generator
    assert other.returncode == 2 and "kdtools --world smoke sft --model 70b" in other.stderr
    kdtools("synth", "--task", TASK, "--n", "10k", *gen, "--force", results=r)
    assert (out / "inputs.jsonl").read_text() == pool                       # seeded: same pool again


def test_a_generator_writing_noise_stops_with_a_shortfall(synth_world, tmp_path):
    """A randomly initialised model writes byte noise: every round is filtered away, and synth
    stops after its rounds with one error line, counts recorded, no size file written."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    r, _ = synth_world
    base = r / "smoke" / "world" / "base" / "1b"
    torch.manual_seed(0)
    noise = tmp_path / "random-init"
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base)).save_pretrained(noise)
    AutoTokenizer.from_pretrained(base).save_pretrained(noise)
    out = tmp_path / "noise"
    proc = kdtools("synth", "--task", TASK, "--n", "5k", "--generator", str(noise), "--out", str(out),
                   results=r, check=False)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: kept only") and "5k needs after 6 rounds" in last
    run = json.loads((out / "run.json").read_text())
    assert run["shortfall"]["size"] == "5k" and len(run["rounds"]) == 6 and run["sizes"] == {}
    assert run["generated"] == run["kept"] + sum(run["removed"].values())
    assert run["removed"]["degenerate"] > run["generated"] / 2
    assert not (out / "5k.jsonl").exists()


@pytest.mark.slow
def test_synth_annotate_two_stage_and_mix(synth_world):
    """The paper's synthetic path end to end: the task teacher labels the synth inputs, the student
    trains CE on them then GKD on human data (two-stage), or GKD on both (Mix)."""
    r, _ = synth_world
    for args in (("--model", "70b", "--data", "full"), ("--model", "1b", "--data", "full"),
                 ("--model", "70b", "--task", TASK, "--data", "full")):
        kdtools("sft", *args, "--max-steps", "3", results=r)
    inputs = r / "smoke" / "data" / "synth" / TASK / "10k.jsonl"
    kdtools("annotate", "--task", TASK, "--inputs", str(inputs), "--max-new-tokens", "8", results=r)
    annotated = r / "smoke" / "data" / "annotated" / TASK / "70b" / "10k"
    pairs = [json.loads(x) for x in (annotated / "pairs.jsonl").read_text().splitlines()]
    synthetic = [json.loads(x)["input"] for x in inputs.read_text().splitlines()]
    assert pairs and all(p["messages"][0]["content"] == f"Translate from Amsi to English: "
                         f"{synthetic[p['input_index']]}" for p in pairs)
    for method in ("two_stage", "mix"):
        kdtools("gkd", "--student", "1b", "--task", TASK, "--data", "full", "--method", method,
                "--synthetic", "10k", "--max-steps", "2", results=r)
        run = json.loads((r / "smoke" / "models" / "1b" / method / TASK / "full+synthetic-10k"
                          / "run.json").read_text())
        assert run["dims"]["synthetic"] == "10k" and run["dims"]["method"] == method
