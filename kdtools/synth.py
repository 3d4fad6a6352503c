"""`kdtools synth`: new, unlabeled task inputs written by a generator model (paper Section 4.3,
Appendix A.4): the synthetic set X^s that `kdtools annotate` later has the teacher label.

    kdtools synth --task summarization --n 100k
    kdtools --world toy synth --task translation --n 10k

The generator (synth.generator, default the 70b SFT'd on full Tulu 3) sees one user turn: an
instruction after Appendix A.4, k demonstrations "In: x\\nOut: y" drawn from the task's training
split, and a final "In:" (Eq. 4). From each completion we keep the new input alone
(kdtools.synthfilters.extract_input) and pass it through the filters, in order: empty,
degenerate, duplicate (incl. training inputs), near duplicate, dev/test contamination.

Generation runs in rounds through kdtools.generate (sharded, resumable) until the pool of kept
inputs reaches the size asked for. The rounds climb the ladder of synth.sizes labels: to build
20k we always run the rounds for 5k, then 10k, then 20k, so the pool depends on the config
only, never on the order in which sizes were requested, and a later, larger --n extends it.
Round r generates ceil(gap * factor) prompts (factor from the keep rate so far) into
<out>/pool/round-<r>/ with seed (world seed, task, r).

Output, in results/<world>/data/synth/<task>/:
    inputs.jsonl      the kept pool in generation order: {"id": "synth_<task>_<i>", "task", "input"}
    <label>.jsonl     the first synth.sizes[label] rows of inputs.jsonl, for each label up to --n
    pool/             the rounds' raw generations (kdtools.generate shards)
    run.json          written last: config, rounds, generated, kept, removed per filter, sizes
`input` is the text of the task's input field: the source sentence (translation, Flores-200's
sentence_asm_Beng), the dialogue (summarization), or the question followed by lettered options
one per line (ARC): kdtools.tasks.input_text.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rich.console import Console

from kdtools import costs, manifest, paths, staging, tasks
from kdtools.data import read_jsonl
from kdtools.errors import KdError
from kdtools.generate import Sampling, generate
from kdtools.sft import GENERAL, finished_sft
from kdtools.synthfilters import FILTERS, InputFilter, extract_input, min_words_for
from kdtools.world import World

console = Console(stderr=True, soft_wrap=True)

# After the paper's Appendix A.4. {k} is the number of demonstrations, {demos} where they go.
# A world's synth.instruction replaces it; one without {demos} is followed by the demonstrations
# and a final "In:", literally Eq. 4: I + [In: x1 Out: y1 ... In: xk Out: yk In:].
INSTRUCTION = """\
You are a data generation assistant. You will be given {k} demonstrations.
Task: Based on these examples, produce exactly one new input message that matches the same task, language, and style.
Strict requirements: Output only the message content itself. Do NOT include any explanations, quotes, labels, or the answer.

Here are {k} demonstrations:

{demos}

Now, generate exactly one brand-new input message that follows the same task and formatting.
Output only the input message content itself. Do not output any answer or extra text.

In:"""

MAX_ROUNDS = 6          # rounds per size label before giving up (a generator that writes junk)
FIRST_KEEP_RATE = 0.75  # assumed share of generations kept, before any round has run
OVERSHOOT = 1.2         # ask for 20% more than the observed keep rate says is needed
MAX_FACTOR = 20.0       # never more than 20 prompts per missing input in one round
MIN_ROUND = 16          # prompts: a round is never smaller (a model load per round)
BATCH_SIZE = 16         # prompts per forward pass (HF backend)
TEMPLATE_SLACK = 64     # tokens the chat template may add around the user turn


@dataclass(frozen=True)
class SynthSettings:
    """A world's `synth:` block; the defaults are the paper's (workflow/config/paper.yaml)."""

    generator: str = "70b"              # alias (its full-data general SFT) or a model folder
    demos: int = 10                     # in-context demonstrations per prompt
    temperature: float = 0.8            # nucleus sampling of new inputs
    top_p: float = 1.0
    max_new_tokens: int = 4096
    annotate_temperature: float = 0.6   # used by `kdtools annotate`, not here
    instruction: str | None = None      # None = INSTRUCTION
    ngram: int = 13                     # word n-grams shared with dev/test = contaminated
    near_duplicate: float = 0.8         # character 5-gram Jaccard at or above = near duplicate
    sizes: dict = field(default_factory=lambda: {"5k": 5000, "10k": 10000, "20k": 20000,
                                                 "50k": 50000, "100k": 100000})

    @classmethod
    def from_world(cls, world: World) -> SynthSettings:
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in world.synth.items() if k in known and v is not None})
        if not settings.sizes:
            raise KdError(f"synth.sizes is empty in {world.file}: give labels like {{5k: 5000}}")
        if not 0 < settings.near_duplicate <= 1:
            raise KdError(f"synth.near_duplicate must be in (0, 1], got {settings.near_duplicate} in {world.file}")
        return settings


@dataclass(frozen=True)
class SynthJob:
    world: World
    task: str
    n: str                              # the size label asked for
    ladder: tuple[tuple[str, int], ...]  # every synth.sizes label up to n, ascending
    generator: str                      # as given (alias or folder)
    generator_weights: str              # the folder that generates
    settings: SynthSettings
    splits: dict                        # train/dev/test -> Path
    out: Path
    force: bool = False
    max_rounds: int = MAX_ROUNDS
    batch_size: int = BATCH_SIZE

    @property
    def sampling(self) -> Sampling:
        return Sampling(temperature=self.settings.temperature, top_p=self.settings.top_p,
                        max_new_tokens=self.settings.max_new_tokens, samples=1,
                        batch_size=self.batch_size)

    @property
    def instruction(self) -> str:
        return self.settings.instruction or INSTRUCTION

    def config(self) -> dict:
        """Everything that determines the pool; not --n (a larger n extends the same pool)."""
        generator_run = manifest.read_manifest(Path(self.generator_weights)) or {}
        return {
            "world": self.world.name, "task": self.task, "seed": self.world.seed,
            "generator": self.generator, "generator_weights": self.generator_weights,
            "generator_config_hash": generator_run.get("config_hash"),
            "chat_template": self.world.chat_template, "source_language": self.world.source_language,
            "instruction": self.instruction, "demos": self.settings.demos,
            "sampling": asdict(self.sampling), "ngram": self.settings.ngram,
            "near_duplicate": self.settings.near_duplicate, "sizes": dict(self.settings.sizes),
            "max_rounds": self.max_rounds,
            "splits_sha256": {s: manifest.file_sha256(p) for s, p in self.splits.items()},
        }


def make_job(world: World, task: str, n: str, out: Path | None = None, generator: str | None = None,
             force: bool = False) -> SynthJob:
    """All checks that need no model: task, size label, splits, generator, output folder."""
    tasks.check_task(task)
    settings = SynthSettings.from_world(world)
    if n not in settings.sizes:
        raise KdError(f"synthetic size '{n}' is not defined in world '{world.name}': use one of "
                      f"{', '.join(settings.sizes)} or add it under synth.sizes in {world.file}")
    ladder = tuple(sorted(((label, rows) for label, rows in settings.sizes.items()
                           if rows <= settings.sizes[n]), key=lambda s: s[1]))
    splits = {split: tasks.split_file(world, task, split) for split in ("train", "dev", "test")}
    generator = generator or settings.generator
    weights = resolve_generator(world, generator)
    out = Path(out) if out else paths.data_dir(world.results, world.name, "synth") / task
    staging.check_writable(out)
    job = SynthJob(world, task, n, ladder, generator, weights, settings, splits, out, force)
    if not force:
        built = manifest.read_manifest(out) or {}
        stored = {built.get("config_hash"), _pool_hash(out)} - {None}
        if stored and stored != {manifest.config_hash(job.config())}:
            raise KdError(f"{out} holds synthetic inputs built with another config: pass --force to "
                          "rebuild them or --out to write elsewhere")
    return job


def resolve_generator(world: World, generator: str) -> str:
    """An alias -> the folder of its finished full-data general SFT; a model folder -> itself."""
    if generator in world.models:
        return str(finished_sft(world, generator, GENERAL, world.grid.full))
    if (Path(generator) / "config.json").is_file():
        return str(Path(generator))
    raise KdError(f"unknown generator '{generator}': use a model alias ({', '.join(world.models)}) "
                  "or a model folder with a config.json")


def _pool_hash(out: Path) -> str | None:
    spec = Path(out) / "pool" / "pool.json"
    return json.loads(spec.read_text())["config_hash"] if spec.is_file() else None


def render_prompt(instruction: str, demos: list[tuple[str, str]]) -> str:
    """The user turn: the instruction with its {k}/{demos} slots filled (Eq. 4)."""
    shots = "\n\n".join(f"In: {x}\nOut: {y}" for x, y in demos)
    if "{demos}" not in instruction:
        return f"{instruction.replace('{k}', str(len(demos)))}\n\n{shots}\n\nIn:"
    return instruction.replace("{k}", str(len(demos))).replace("{demos}", shots)


def derived_seed(*parts) -> int:
    """A seed from (world seed, task, round ...): stable across processes and machines."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:8], 16) % (2**31 - 1)


class PromptMaker:
    """Prompt i: k demonstrations drawn from the training split with a seed of (seed, task, i),
    dropped from the end while the prompt would not fit the generator's context."""

    def __init__(self, job: SynthJob, train: list[tuple[str, str]]):
        self.job, self.train = job, train
        self.k = min(job.settings.demos, len(train))
        config = Path(job.generator_weights) / "config.json"
        context = json.loads(config.read_text()).get("max_position_embeddings") if config.is_file() else None
        self.budget = context - job.settings.max_new_tokens - TEMPLATE_SLACK if context else None
        self.tokenizer = None
        self.shortened = 0                  # prompts that got fewer than k demonstrations

    def __call__(self, index: int) -> list[dict]:
        rng = random.Random(f"{self.job.world.seed}/{self.job.task}/demos/{index}")
        demos = [self.train[i] for i in rng.sample(range(len(self.train)), self.k)]
        text = render_prompt(self.job.instruction, demos)
        while len(demos) > 1 and not self.fits(text):
            demos = demos[:-1]
            text = render_prompt(self.job.instruction, demos)
        if not self.fits(text):
            raise KdError(
                f"a synth prompt with one demonstration does not fit {self.job.generator_weights}'s "
                f"context ({self.budget + self.job.settings.max_new_tokens + TEMPLATE_SLACK} positions, "
                f"{self.job.settings.max_new_tokens} kept for the new input): shorten synth.instruction "
                f"or lower synth.max_new_tokens in {self.job.world.file}")
        self.shortened += len(demos) < self.k
        return [{"role": "user", "content": text}]

    def fits(self, text: str) -> bool:
        # a token covers at least one UTF-8 byte: short prompts need no tokenizer
        if self.budget is None or len(text.encode()) <= self.budget:
            return True
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            from kdtools.chat import prepare_tokenizer

            self.tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(self.job.generator_weights),
                                               self.job.world.chat_template)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) <= self.budget


def round_size(gap: int, generated: int, kept: int) -> int:
    """Prompts for the next round: the gap over the keep rate so far, with some overshoot."""
    rate = kept / generated if generated else FIRST_KEEP_RATE
    factor = min(MAX_FACTOR, OVERSHOOT / max(rate, 1e-9))
    return max(MIN_ROUND, math.ceil(gap * factor))


def run(job: SynthJob) -> dict:
    config = job.config()
    done = manifest.reusable(job.out, config, job.force)
    if done and job.n in done.get("sizes", {}):
        console.print(f"[green]up to date:[/] {job.out}/run.json")
        return done
    started = time.time()
    if job.force:  # start over: the manifest first, so the folder is never trusted half-cleared
        (job.out / paths.MANIFEST).unlink(missing_ok=True)
        for label in job.settings.sizes:
            (job.out / f"{label}.jsonl").unlink(missing_ok=True)
        shutil.rmtree(job.out / "pool", ignore_errors=True)
    manifest.atomic_write_json(job.out / "pool" / "pool.json",
                               {"config_hash": manifest.config_hash(config), "config": config})

    rows = {split: read_jsonl(path) for split, path in job.splits.items()}
    train = [(tasks.input_text(job.task, r), tasks.reference(job.task, r)) for r in rows["train"]]
    if not train:
        raise KdError(f"{job.splits['train']} has no rows: the demonstrations come from it")
    heldout = [tasks.input_text(job.task, r) for split in ("dev", "test") for r in rows[split]]
    train_inputs = [x for x, _ in train]
    filters = InputFilter(train_inputs, heldout, job.settings.ngram, job.settings.near_duplicate,
                          min_words_for(train_inputs))
    prompt = PromptMaker(job, train)
    console.print(f"[bold]synth[/] {job.task} up to {job.n} with {job.generator} ({job.generator_weights}) "
                  f"-> {job.out}")

    pool: list[str] = []
    removed = dict.fromkeys(FILTERS, 0)
    rounds: list[dict] = []
    generated = truncated = 0
    shortfall = None
    for label, target in job.ladder:
        tries = 0
        while len(pool) < target and tries < job.max_rounds:
            r, first = len(rounds), sum(x["prompts"] for x in rounds)
            size = round_size(target - len(pool), generated, len(pool))
            seed = derived_seed(job.world.seed, job.task, "round", r)
            prompts = [prompt(i) for i in range(first, first + size)]
            outputs = generate(job.generator_weights, prompts, job.out / "pool" / f"round-{r:03d}", job.sampling,
                               seed, job.world.chat_template, label=f"synth {job.task} round {r}")
            counts = dict.fromkeys(FILTERS, 0)
            for row in outputs:
                text = extract_input(row["completion"])
                reason = filters.admit(text)
                if reason is None:
                    pool.append(text)
                else:
                    counts[reason] += 1
                    removed[reason] += 1
            generated += len(outputs)
            truncated += sum(o["finish_reason"] == "length" for o in outputs)
            rounds.append({"round": r, "for_size": label, "first_prompt": first, "prompts": size, "seed": seed,
                           "kept": len(outputs) - sum(counts.values()), "removed": counts})
            console.print(f"  round {r} ({label}): {size} prompts, kept {rounds[-1]['kept']}, "
                          f"pool {len(pool)}/{target}; removed {counts}")
            tries += 1
        if len(pool) < target:
            shortfall = {"size": label, "needed": target, "kept": len(pool), "rounds": tries}
            break

    sizes = write_outputs(job, pool)
    payload = manifest.write_manifest(
        job.out, "synth", config, started, task=job.task, generator=job.generator,
        requested=job.n, generated=generated, kept=len(pool), removed=removed, truncated=truncated,
        prompts_with_fewer_demos=prompt.shortened, rounds=rounds, sizes=sizes, shortfall=shortfall,
        # extending a pool (a larger --n) adds this invocation's device-seconds to the earlier ones
        cost=costs.measure(started, ((done or {}).get("cost") or {}).get("device_seconds") or 0.0),
    )
    if shortfall:
        raise KdError(
            f"kept only {len(pool)} synthetic {job.task} inputs of the {shortfall['needed']} that "
            f"{shortfall['size']} needs after {shortfall['rounds']} rounds ({generated} generated; removed "
            f"{', '.join(f'{k} {v}' for k, v in removed.items() if v)}): train the generator longer or "
            f"loosen synth.near_duplicate/ngram in {job.world.file}; sizes written: {', '.join(sizes) or 'none'}"
        )
    console.print(f"[green]done[/]: kept {len(pool)} of {generated} generated in {len(rounds)} rounds "
                  f"-> {job.out}")
    return payload


def write_outputs(job: SynthJob, pool: list[str]) -> dict:
    """inputs.jsonl (the whole pool) and one prefix file per reached size label."""
    lines = [json.dumps({"id": f"synth_{job.task}_{i}", "task": job.task, "input": text}, ensure_ascii=False) + "\n"
             for i, text in enumerate(pool)]
    manifest.atomic_write_text(job.out / "inputs.jsonl", "".join(lines))
    sizes = {}
    for label, target in job.ladder:
        if target > len(pool):
            break
        path = job.out / f"{label}.jsonl"
        manifest.atomic_write_text(path, "".join(lines[:target]))
        sizes[label] = {"file": path.name, "rows": target, "sha256": manifest.file_sha256(path)}
    return sizes
