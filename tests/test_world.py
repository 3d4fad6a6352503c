"""Worlds: the three shipped configs validate and map aliases and sizes as the paper does."""

from __future__ import annotations

import pytest
import yaml

from kdtools.errors import KdError
from kdtools.world import config_dir, load_world, validate_world_dict

PAPER_MODELS = {
    "1b": "meta-llama/Llama-3.2-1B",
    "3b": "meta-llama/Llama-3.2-3B",
    "8b": "meta-llama/Llama-3.1-8B",
    "70b": "meta-llama/Llama-3.1-70B",
    "70b-it": "meta-llama/Llama-3.3-70B-Instruct",
}
PAPER_LADDER = ["10k", "20k", "40k", "80k", "100k", "150k", "200k", "500k", "939k", "full"]


def test_paper_world_is_the_paper():
    w = load_world("paper")
    assert {a: w.resolve_model(a) for a in PAPER_MODELS} == PAPER_MODELS
    assert list(w.data.sizes) == PAPER_LADDER
    assert w.size_rows("40k") == 40_000 and w.size_rows("full") is None
    assert w.data.source == "allenai/tulu-3-sft-mixture"
    t = w.train  # Appendix A.2
    assert (t.learning_rate, t.effective_batch_size, t.epochs, t.lr_scheduler, t.warmup_ratio,
            t.max_length) == (5e-6, 128, 2, "linear", 0.03, 4096)


@pytest.mark.parametrize("name", ["toy", "smoke"])
def test_toy_worlds_map_aliases_to_built_models(name, tmp_path):
    w = load_world(name, tmp_path)
    for alias in PAPER_MODELS:
        assert w.resolve_model(alias) == str(tmp_path / name / "world" / "base" / alias)
    sizes = [n for n in w.data.sizes.values() if n is not None]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_world_from_path(tmp_path):
    text = (load_world("smoke").file.read_text()).replace("world: smoke", "world: mine")
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    assert load_world(str(path)).name == "mine"


@pytest.mark.parametrize("label", ["40q", "40K", "k", "1.5k", ""])
def test_bad_size_labels(label):
    with pytest.raises(KdError, match="size"):
        load_world("paper").size_rows(label)


def test_undefined_size_names_the_defined_ones():
    with pytest.raises(KdError, match="10k, 20k, 40k, full"):
        load_world("smoke").size_rows("939k")


def test_unknown_alias_names_the_aliases():
    with pytest.raises(KdError, match="1b, 3b, 8b, 70b, 70b-it"):
        load_world("paper").resolve_model("13b")


def test_misspelt_key_is_named(tmp_path):
    import yaml

    raw = yaml.safe_load(load_world("paper").file.read_text())
    raw["train"]["lerning_rate"] = raw["train"].pop("learning_rate")
    with pytest.raises(KdError, match="unknown key 'lerning_rate' at train"):
        validate_world_dict(raw, "x.yaml")


def test_wrong_type_is_named():
    import yaml

    raw = yaml.safe_load(load_world("paper").file.read_text())
    raw["train"]["epochs"] = "two"
    with pytest.raises(KdError, match="train.epochs"):
        validate_world_dict(raw, "x.yaml")


def test_unparsable_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("world: x\nmodels: [1b\n")
    with pytest.raises(KdError, match="not valid YAML"):
        load_world(str(path))


def test_unknown_world():
    with pytest.raises(KdError, match="unknown world 'moon'"):
        load_world("moon")


@pytest.mark.parametrize("name", ["toy", "smoke"])
def test_toy_source_language_is_the_generated_one(name):
    from kdtools.toy.language import LANGUAGE

    assert load_world(name).source_language == LANGUAGE
    assert load_world("paper").source_language == "Assamese"


def paper_with(tmp_path, **keys) -> str:
    """paper.yaml with top-level keys replaced (None removes one), written to a file -> its path."""
    raw = yaml.safe_load((config_dir() / "paper.yaml").read_text())
    raw.update(keys)
    file = tmp_path / "world.yaml"
    file.write_text(yaml.safe_dump({k: v for k, v in raw.items() if v is not None}, sort_keys=False))
    return str(file)


def test_grid_defaults_to_the_paper_and_toy_worlds_reduce_it(tmp_path):
    paper = load_world("paper").grid
    assert list(paper.sizes) == PAPER_LADDER and paper.full == "full"
    assert list(paper.synthetic) == ["5k", "10k", "20k", "50k", "100k"]
    toy = load_world("toy", tmp_path).grid
    assert (list(toy.sizes), toy.full, list(toy.synthetic)) == (["10k", "20k"], "20k", ["5k", "20k", "100k"])
    assert load_world(paper_with(tmp_path, grid=None)).grid == paper  # the same cells without the section


@pytest.mark.parametrize("grid, names", [
    ({"sizes": ["10k", "30k"]}, ["grid.sizes names '30k'", "data.sizes"]),
    ({"full": "2000k"}, ["grid.full names '2000k'", "data.sizes"]),
    ({"synthetic": ["7k"]}, ["grid.synthetic names '7k'", "synth.sizes"]),
])
def test_grid_label_the_world_lacks_is_one_line(tmp_path, grid, names):
    with pytest.raises(KdError) as err:
        load_world(paper_with(tmp_path, grid=grid))
    assert "\n" not in str(err.value) and all(n in str(err.value) for n in names)


def test_full_data_means_the_grids_full_size(tmp_path):
    """In the toy world "full data" is grid.full (20k): a domain student's start and the synth
    generator are the 20k general SFTs, and a missing one is named with the command that makes it."""
    from kdtools import gkd, sft, synth

    w = load_world("toy", tmp_path)
    for call in (lambda: sft.resolve_init(w, "1b", "translation", None),
                 lambda: gkd.resolve_student(w, "1b", "arc", "full", None),
                 lambda: synth.resolve_generator(w, "70b")):
        with pytest.raises(KdError, match=r"general 20k .*sft --model \w+ --data 20k"):
            call()
