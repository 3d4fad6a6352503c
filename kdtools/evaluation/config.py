"""The world's `eval:` section as frozen dataclasses, validated once (by `kdtools eval`).

    eval:
      backend: auto                       # auto | hf | vllm
      judge: {kind: openai, url: null, model: meta-llama/Llama-3.3-70B-Instruct}
      comet: {model: Unbabel/wmt22-comet-da, batch_size: 16}
      suites:
        general:
          bbh: {task: bbh_cot_fewshot, metric: "exact_match,get-answer", num_fewshot: 3}
          infobench: {task: kd_infobench, data: {hub: kqsong/InFoBench, split: train}}

A benchmark's `task` is an lm-eval task or group name, or one of our templates (`kd_*`, in
kdtools/evaluation/tasks/) rendered over `data`: a local JSONL ('@world/...' = the built toy
world) or a hub dataset that is downloaded once into <results>/<world>/data/eval/.
The JSON Schema (workflow/schemas/world.schema.json) checks the shape; this module checks what
a schema cannot (templates exist, every lm-eval-scored benchmark names its metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtools.errors import KdError

TEMPLATES = Path(__file__).parent / "tasks"
BACKENDS = ("auto", "hf", "vllm")
JUDGE_KINDS = ("rules", "openai", "hf")
LOADERS = ("rows", "flores_pair", "arc")
# template -> how its generations are scored (anything else: by lm-eval, through `metric`)
POST_SCORED = {"kd_infobench": "judge", "kd_translation": "translation",
               "kd_summarization": "summarization"}


@dataclass(frozen=True)
class DataSource:
    """Where a template task's rows come from: exactly one of `path` and `hub`."""

    path: str | None = None          # local JSONL, after '@world/' expansion
    hub: str | None = None           # hub dataset id
    name: str | None = None          # hub config name (flores: the source language, asm_Beng)
    split: str = "test"
    loader: str = "rows"             # rows | flores_pair (zip two languages by id) | arc (letters)
    target: str | None = None        # flores_pair: the target language config (eng_Latn)
    start: int | None = None         # keep rows[start:stop] (the paper's 500/512 Flores split)
    stop: int | None = None

    def tag(self) -> str:
        """A file-safe name for the hub cache file."""
        parts = [self.name or "default", self.target or "", self.split,
                 f"{self.start or 0}-{self.stop if self.stop is not None else 'end'}"]
        return "_".join(p for p in parts if p).replace("/", "_")


@dataclass(frozen=True)
class Benchmark:
    name: str                        # key under the suite; the metric key for general benchmarks
    task: str                        # lm-eval task/group, or a kd_* template
    metric: str | None = None        # lm-eval results key, e.g. "exact_match,get-answer"
    report: str | None = None        # output metric key (default: `name`)
    num_fewshot: int | None = None   # None: the task's own default
    max_gen_toks: int | None = None  # templates: generation cap; built-ins: their own
    data: DataSource | None = None   # templates only

    @property
    def template(self) -> bool:
        return self.task.startswith("kd_")

    @property
    def scoring(self) -> str:
        """'lmeval', 'judge', 'translation' or 'summarization'."""
        return POST_SCORED.get(self.task, "lmeval")

    @property
    def metric_key(self) -> str:
        return self.report or self.name


@dataclass(frozen=True)
class JudgeSpec:
    kind: str = "openai"             # rules (toy: the stored checks) | openai (HTTP) | hf (local)
    url: str | None = None           # openai: the server root (http://host:8000)
    model: str | None = None         # openai: the served name; hf: a folder or a world alias
    max_tokens: int = 16             # a yes/no answer needs a few tokens


@dataclass(frozen=True)
class EvalSpec:
    backend: str = "auto"            # auto: vLLM when installed and CUDA is present, else HF
    max_length: int | None = None    # context length for generation (None: the model's)
    judge: JudgeSpec = JudgeSpec()
    comet_model: str = "Unbabel/wmt22-comet-da"   # hub id or a local COMET checkpoint (.ckpt)
    comet_batch_size: int = 16
    suites: tuple = ()               # ((suite, (Benchmark, ...)), ...)

    def suite(self, name: str) -> tuple[Benchmark, ...]:
        return dict(self.suites)[name]

    @property
    def suite_names(self) -> list[str]:
        return [s for s, _ in self.suites]


def parse_source(raw, where: str, world) -> DataSource:
    """A world file's `data:`/`tasks:` source entry: a JSONL path ('@world/...') or a hub spec."""
    if isinstance(raw, str):
        return DataSource(path=world.expand(raw))
    if not isinstance(raw, dict) or "hub" not in raw:
        raise KdError(f"{where}.data must be a JSONL path or {{hub: <dataset id>, split: ...}}")
    src = DataSource(**raw)
    if src.loader not in LOADERS:
        raise KdError(f"{where}.data.loader '{src.loader}' is unknown: use one of {', '.join(LOADERS)}")
    if src.loader == "flores_pair" and not (src.name and src.target):
        raise KdError(f"{where}.data: flores_pair needs `name` (source) and `target` configs")
    return src


def _benchmark(suite: str, name: str, raw: dict, world) -> Benchmark:
    where = f"{world.file}: eval.suites.{suite}.{name}"
    data = parse_source(raw["data"], where, world) if raw.get("data") is not None else None
    bench = Benchmark(name=name, task=raw["task"], metric=raw.get("metric"), report=raw.get("report"),
                      num_fewshot=raw.get("num_fewshot"), max_gen_toks=raw.get("max_gen_toks"),
                      data=data)
    if bench.template:
        if not (TEMPLATES / f"{bench.task}.yaml").is_file():
            known = ", ".join(sorted(p.stem for p in TEMPLATES.glob("kd_*.yaml")))
            raise KdError(f"{where}: no task template '{bench.task}': use one of {known}")
        if data is None:
            raise KdError(f"{where}: template task {bench.task} needs `data` (a JSONL path or a hub dataset)")
    elif data is not None:
        raise KdError(f"{where}: `data` is only for kd_* templates; lm-eval task {bench.task} brings its own")
    if bench.scoring == "lmeval" and not bench.metric:
        raise KdError(f"{where}: name the lm-eval metric to report, e.g. metric: \"exact_match,none\"")
    return bench


def load_spec(world) -> EvalSpec:
    """The world's `eval` section -> EvalSpec, or a KdError naming the first problem."""
    raw = world.raw.get("eval")
    if not raw:
        raise KdError(
            f"world '{world.name}' has no `eval` section in {world.file}: copy the one at the end "
            "of workflow/config/paper.yaml (or toy.yaml for a toy world)"
        )
    judge = JudgeSpec(**(raw.get("judge") or {}))
    if judge.kind not in JUDGE_KINDS:
        raise KdError(f"{world.file}: eval.judge.kind '{judge.kind}': use one of {', '.join(JUDGE_KINDS)}")
    backend = raw.get("backend", "auto")
    if backend not in BACKENDS:
        raise KdError(f"{world.file}: eval.backend '{backend}': use one of {', '.join(BACKENDS)}")
    comet = raw.get("comet") or {}
    suites = tuple(
        (suite, tuple(_benchmark(suite, name, b, world) for name, b in benches.items()))
        for suite, benches in raw["suites"].items()
    )
    return EvalSpec(backend=backend, max_length=raw.get("max_length"), judge=judge,
                    comet_model=comet.get("model", EvalSpec.comet_model),
                    comet_batch_size=comet.get("batch_size", EvalSpec.comet_batch_size),
                    suites=suites)
