"""All text of the toy world, generated from a seed with the standard library only.

    python3 -c "from kdtools.toy.content import *; print(build_content(ContentSpec()).tasks)"

Order matters: the held-out sets (benchmarks, then domain tasks) are drawn first and their keys
reserved; then the student instruction pool, then the 70b-it pool (which also avoids every
student item), then the pretraining corpus. Every generator uses its own random.Random seeded
with a string, so the output is byte-identical across processes and PYTHONHASHSEED values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields

from kdtools.errors import KdError
from kdtools.toy.benchmarks import build_benchmarks
from kdtools.toy.corpus import build_corpus
from kdtools.toy.knowledge import NameBank, World, build_world
from kdtools.toy.language import VOCABULARY, Language, build_language
from kdtools.toy.operations import SPELL_WORDS
from kdtools.toy.science import Science, build_science
from kdtools.toy.skills import build_instructions
from kdtools.toy.tasks import build_tasks

MIN_ENTITIES = 18  # below this a pool (student / it / bench) can end up without people


@dataclass(frozen=True)
class ContentSpec:
    """Sizes of everything the toy world writes; every count is met exactly."""

    seed: int = 0                 # drives every generator; same seed -> identical content
    n_entities: int = 60          # people, cities, countries (3:2:1) in the knowledge base
    n_instructions: int = 12000   # student-visible instruction pool (the toy Tulu 3)
    n_it_instructions: int = 3000 # held-out pool that only the "70b-it" teacher is tuned on
    n_pretrain_docs: int = 20000  # documents in the pretraining corpus
    bench_dev: int = 50           # dev rows per general benchmark (bbh, gpqa, mmlu_pro, ...)
    bench_test: int = 200         # test rows per general benchmark
    task_train: int = 300         # train rows per domain task (translation, summarization, arc)
    task_dev: int = 100           # dev rows per domain task
    task_test: int = 200          # test rows per domain task

    def __post_init__(self):
        for f in fields(self):
            if f.name != "seed" and getattr(self, f.name) < 0:
                raise KdError(f"toy content: {f.name} must be >= 0, got {getattr(self, f.name)}")
        if self.n_entities < MIN_ENTITIES:
            raise KdError(f"toy content: n_entities must be >= {MIN_ENTITIES}, "
                          f"got {self.n_entities}")


@dataclass(frozen=True)
class Content:
    pretrain_texts: list[str]
    instructions: list[dict]      # rows in Tulu 3 schema: {"id", "messages", "source"}
    it_instructions: list[dict]   # same schema, disjoint items
    benchmarks: dict[str, dict[str, list[dict]]]   # name -> split ("dev","test") -> rows
    tasks: dict[str, dict[str, list[dict]]]        # name -> split ("train","dev","test") -> rows


def build_sources(seed: int, n_entities: int) -> tuple[World, Science, Language]:
    """The knowledge base, the science facts and the Amsi language that all text is written from."""
    bank = NameBank(random.Random(f"{seed}:names"), taken=VOCABULARY + SPELL_WORDS)
    world = build_world(random.Random(f"{seed}:world"), n_entities, bank)
    sci = build_science(random.Random(f"{seed}:science"), n_entities, bank)
    return world, sci, build_language(bank)


def build_content(spec: ContentSpec) -> Content:
    seed = spec.seed
    world, sci, lang = build_sources(seed, spec.n_entities)

    reserved: set = set()
    benchmarks = build_benchmarks(seed, world, spec.bench_dev, spec.bench_test, reserved)
    sizes = {"train": spec.task_train, "dev": spec.task_dev, "test": spec.task_test}
    tasks = build_tasks(seed, lang, sci, world.names["city"], sizes, reserved)

    instructions, student_keys = build_instructions(
        seed, world, sci, lang, "student", spec.n_instructions, reserved)
    it_instructions, _ = build_instructions(
        seed, world, sci, lang, "it", spec.n_it_instructions, reserved | student_keys,
        first_id=spec.n_instructions)
    pretrain = build_corpus(seed, world, sci, lang, spec.n_pretrain_docs, reserved)
    return Content(pretrain, instructions, it_instructions, benchmarks, tasks)
