"""What one workflow job costs: the job's models and token counts (measured from the data files
when they are here) fed through kdtools.costmodel, and the Slurm allocation that follows.

    est = estimate(world, "gkd", {"student": "3b", "task": "general", "size": "40k"}, Settings())
    est.gpu_hours, est.wall_s, est.peak_bytes, est.gpus

One entry, `estimate(world, rule, wildcards, settings)`, serves both `kdtools plan` and the
Slurm profile's resources (workflow/rules/common.smk), so the two never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from kdtools import costmodel as cm
from kdtools import paths
from kdtools.errors import KdError
from kdtools.world import World

GENERAL = "general"
TASKS = ("translation", "summarization", "arc")
SAMPLE_ROWS = 2000                 # rows tokenized per data file (subsets are a seeded shuffle:
                                   # their first rows are a uniform sample)
CHARS_PER_TOKEN = 4.0              # proxy when no tokenizer is at hand (Llama 3, English text)
TEMPLATE_TOKENS = 4                # chat-template markers per message (Tulu format)
FUSED_LOGIT_CHUNK = 1024           # positions per chunk of kdtools' fused GKD loss
VLLM_BATCH = 256                   # vLLM's default max_num_seqs: sequences decoded together
SYNTH_KEEP_RATE = 0.8              # kept / generated synthetic inputs after the filters (assumed;
                                   # the synth manifest records both, `plan --check` shows them)
SYNTH_INSTRUCTION_TOKENS = 150     # Appendix A.4's instruction


@dataclass(frozen=True)
class Tokens:
    """A data set as the cost model sees it: rows and mean tokens per row."""

    rows: int
    prompt: float                  # everything before the last assistant turn
    response: float                # the last assistant turn
    source: str                    # where the numbers come from

    @property
    def per_row(self) -> float:
        return self.prompt + self.response

    @property
    def total(self) -> float:
        return self.rows * self.per_row


# Fallbacks for the paper world when its data is not on this machine. Tulu 3: the dataset card
# gives 2,914,250,826 bytes for 939,343 rows = 3,102 bytes/row, at ~4 bytes per Llama 3 token
# ~ 775 tokens/row; the 40/60 prompt/answer split is our assumption. Domain tasks: rows from
# the paper (Section 4.1); tokens per row estimated from typical lengths (Assamese is ~3x more
# tokens per word than English in Llama 3's tokenizer).
TULU_ROWS = 939_343
ASSUMED = {
    GENERAL: (310.0, 465.0),
    "translation": (110.0, 35.0),
    "summarization": (230.0, 30.0),
    "arc": (110.0, 3.0),
}
TASK_ROWS = {"translation": 997, "summarization": 1000, "arc": 1119}
# Paper benchmarks: (examples, prompt tokens, generated tokens) per lm-eval task (few-shot CoT
# prompts as configured in paper.yaml; generation lengths are typical CoT answers, assumed).
BENCHMARKS = {
    "bbh": (6511, 900, 200), "gpqa": (448, 250, 600), "mmlu_pro": (12032, 1500, 300),
    "ifeval": (541, 80, 400), "infobench": (500, 100, 400),
    "translation": (512, 110, 40), "summarization": (1500, 230, 40), "arc": (672, 110, 4),
}


@dataclass(frozen=True)
class Settings:
    """How to cost and allocate: the device, its rates (nominal or calibrated) and the policy."""

    gpu: str = "h100"
    calibration: dict | None = None  # kdtools.calibrate's file, parsed
    gpus_per_node: int = 8
    nodes: int | None = None         # None: choose (smallest that fits memory and max_runtime_h)
    zero: int = 3                    # DeepSpeed ZeRO stage of multi-GPU training (launch.py: 3)
    safety: float = 1.5              # Slurm time limit = estimate x safety
    max_runtime_h: float = 48.0      # a typical partition limit: scale out to stay under it
    max_nodes: int = 8
    teacher_cache_k: int = 64        # top-k of the optional teacher cache (issue 7), for savings

    def __post_init__(self):
        if self.safety < 1:
            raise KdError(f"safety factor must be at least 1 (the time limit is estimate x safety), got {self.safety}")
        if self.max_runtime_h <= 0 or self.gpus_per_node < 1 or (self.nodes is not None and self.nodes < 1):
            raise KdError("max_runtime_h, --gpus-per-node and --nodes must be positive")
        if self.zero not in (0, 1, 2, 3):
            raise KdError(f"--zero must be 0, 1, 2 or 3, got {self.zero}")

    @property
    def device(self) -> cm.Device:
        return cm.device(self.gpu)

    def rates(self, model: str) -> cm.Rates:
        """Calibrated rates of this model alias (or the calibration's slowest model), else nominal."""
        cal = self.calibration
        if not cal:
            return cm.nominal_rates(self.device)
        models = cal["models"]
        m = models.get(model) or min(models.values(), key=lambda r: r["train_flops"])
        # the on-policy sampler's own step where it was timed, else the device's measured floor
        return cm.Rates(m["train_flops"], m["forward_flops"], m["bandwidth"], m.get("decode_step_s", 0.0),
                        cal.get("startup_s", 0.0), cal.get("load_bytes_per_s", 2e9), self.device.sampler_layer_s,
                        m.get("onpolicy_step_s") or None)


@dataclass
class Estimate:
    rule: str
    job: str
    stage: str
    gpus: int = 0
    nodes: int = 1
    wall_s: float = 0.0
    peak_bytes: float = 0.0
    fits: bool = True
    trained_tokens: float = 0.0
    generated_tokens: float = 0.0
    teacher_tokens: float = 0.0
    disk_bytes: float = 0.0
    cpus: int = 2
    host_mem_mb: int = 4000
    cache_saving_gpu_s: float = 0.0   # off-policy teacher forwards a top-k cache replaces
    cache_key: str | None = None      # (teacher, data) whose cache serves this job
    cache_write_gpu_s: float = 0.0    # one teacher pass over that data, to write the cache
    cache_bytes: float = 0.0
    onpolicy_s: float = 0.0           # of wall_s: the student's on-policy sampling (GKD)
    onpolicy_steps: float = 0.0       # optimizer steps that sample (lambda x steps, expected)
    over_limit: bool = False          # even the largest allocation exceeds max_runtime_h
    notes: list[str] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.wall_s / 3600


# ---------------------------------------------------------------------------------------------
# Models.
def arch_of(world: World, model: str) -> cm.Arch:
    """The shape of a model alias or folder: the paper's table, a local config.json, or the toy
    world's spec (before `kdtools toy` has built it)."""
    ref = world.resolve_model(model) if model in world.models else model
    if ref in cm.ARCHS:
        return cm.ARCHS[ref]
    config = Path(ref) / "config.json"
    if config.is_file():
        return cm.arch_from_config(json.loads(config.read_text()))
    toy = (world.toy or {}).get("models", {}).get(model.removesuffix("-it"))
    if toy:
        return cm.Arch(layers=toy["layers"], hidden=toy["hidden"], ffn=toy["ffn"], heads=max(1, toy["hidden"] // 16),
                       kv_heads=max(1, toy["hidden"] // 16), vocab=world.toy["tokenizer"]["vocab_size"], tied=True)
    raise KdError(f"no architecture known for model '{model}' ({ref}): give a folder with a config.json "
                  "or add the hub id to kdtools/costmodel.py ARCHS")


def dtype_bytes(world: World) -> int:
    """Bytes per weight as trained and saved: bf16 where the world trains in it, else fp32."""
    return 2 if world.train.bf16 else 4


# ---------------------------------------------------------------------------------------------
# Token counts, measured from the files when present.
@cache
def _tokenizer(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


def tokenizer_file(world: World) -> str | None:
    """The world's tokenizer.json when it is on this machine (toy worlds, local model folders)."""
    candidates = [world.built_dir / "tokenizer" / "tokenizer.json"]
    candidates += [Path(world.expand(ref)) / "tokenizer.json" for ref in world.models.values()]
    return next((str(p) for p in candidates if p.is_file()), None)


def _counter(tokenizer: str | None):
    """-> (count(text) -> tokens, how): the tokenizer if local, else characters / 4."""
    if tokenizer:
        tok = _tokenizer(tokenizer)
        return (lambda text: len(tok.encode(text, add_special_tokens=False).ids)), "tokenizer"
    return (lambda text: len(text) / CHARS_PER_TOKEN), f"{CHARS_PER_TOKEN:g} chars/token"


def _sample(path: Path, limit: int = SAMPLE_ROWS) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def message_tokens(messages: list[dict], count) -> tuple[float, float]:
    """(prompt, response) tokens of a conversation: the response is the last assistant turn."""
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))
    cost = [count(m.get("content") or "") + TEMPLATE_TOKENS for m in messages]
    return float(sum(cost[:last])), float(sum(cost[last:]))


@cache
def file_tokens(path: Path, task: str | None, tokenizer: str | None, language: str) -> tuple[float, float, int, str]:
    """Mean (prompt, response) tokens over the first SAMPLE_ROWS rows of a JSONL file, its row
    count, and how they were counted. Rows without `messages` are a task's raw split."""
    from kdtools import tasks

    count, how = _counter(tokenizer)
    rows = _sample(path)
    convs = [r["messages"] if "messages" in r else
             tasks.to_messages(task, r, i, language)["messages"] for i, r in enumerate(rows)]
    pairs = [message_tokens(c, count) for c in convs] or [(0.0, 0.0)]
    n = _count_lines(path)
    return (sum(p for p, _ in pairs) / len(pairs), sum(r for _, r in pairs) / len(pairs), n,
            f"measured: {path} ({min(n, SAMPLE_ROWS)} rows, {how})")


def data_tokens(world: World, task: str, size: str) -> Tokens:
    """The training data of a cell: the general subset `size`, or a domain task's training split."""
    max_len = world.train.max_length
    if task == GENERAL:
        rows = world.size_rows(size)
        candidates = [paths.subset_file(world.results, world.name, world.data.name, size),
                      Path(world.expand(world.data.source))]
    else:
        rows = None
        candidates = [paths.subset_file(world.results, world.name, task, "full"),
                      world.built_dir / "tasks" / task / "train.jsonl"]
    for path in candidates:
        if path.suffix == ".jsonl" and path.is_file():
            prompt, response, n, source = file_tokens(path, None if task == GENERAL else task,
                                                      tokenizer_file(world), world.source_language)
            return _capped(Tokens(rows if rows is not None else n, prompt, response, source), max_len)
    prompt, response = ASSUMED.get(task, ASSUMED[GENERAL])
    n = rows if rows is not None else (TULU_ROWS if task == GENERAL else TASK_ROWS.get(task, 1000))
    if world.toy and rows is None:
        n = world.toy["content"]["n_instructions" if task == GENERAL else "task_train"]
    return _capped(Tokens(n, prompt, response, "assumed (data not on this machine)"), max_len)


def _capped(tokens: Tokens, max_len: int) -> Tokens:
    """Rows are truncated to the training length."""
    if tokens.per_row <= max_len:
        return tokens
    scale = max_len / tokens.per_row
    return replace(tokens, prompt=tokens.prompt * scale, response=tokens.response * scale)


def synthetic_tokens(world: World, task: str, label: str) -> Tokens:
    """A synthetic set: rows from synth.sizes, lengths like the task's own training pairs."""
    sizes = world.synth.get("sizes", {})
    if label not in sizes:
        raise KdError(f"synthetic size '{label}' is not in synth.sizes of {world.file}: use one of {', '.join(sizes)}")
    base = data_tokens(world, task, "full")
    return replace(base, rows=sizes[label], source=base.source + "; synthetic rows from synth.sizes")


def benchmark_sizes(world: World, suite: str) -> list[tuple[str, int, float, float]]:
    """(benchmark, examples, prompt tokens, generated tokens) of an eval suite."""
    suites = (world.raw.get("eval") or {}).get("suites") or {}
    if suite not in suites:
        raise KdError(f"unknown eval suite '{suite}': use one of {', '.join(suites) or 'general'}")
    out = []
    for name, spec in suites[suite].items():
        n, prompt, gen = BENCHMARKS.get(name, (500, 200, 200))
        gen = spec.get("max_gen_toks", gen) if world.toy else min(gen, spec.get("max_gen_toks", gen))
        data = spec.get("data")
        if isinstance(data, str) and Path(world.expand(data)).is_file():
            path = Path(world.expand(data))
            count, _ = _counter(tokenizer_file(world))
            rows = _sample(path, 200)
            n = _count_lines(path)
            prompt = sum(count(json.dumps(r, ensure_ascii=False)) for r in rows) / max(1, len(rows))
        out.append((name, n, float(prompt), float(gen)))
    return out
