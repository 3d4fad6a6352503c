"""Generation and scoring through lm-eval's Python API, for every suite and every world.

    lm = build_lm(weights, backend="hf", ...)     # HF or vLLM, with the world's chat template
    out = evaluate(lm, benchmarks, data_files, limit=5)

Built-in tasks (bbh_cot_fewshot, gpqa_main_cot_zeroshot, mmlu_pro, ifeval) come from lm-eval's
registry; our kd_* templates are rendered into a temporary include_path over local JSONL files.
Every request goes through the chat template (apply_chat_template=True; few-shot examples as
multi-turn), greedy. One simple_evaluate call per suite, so the model is loaded once.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kdtools.evaluation.config import TEMPLATES, Benchmark
from kdtools.evaluation.punkt import install_punkt

DEFAULT_MAX_GEN_TOKS = 256


@dataclass
class BenchOutput:
    """What lm-eval produced for one benchmark (a task or a group of subtasks)."""

    name: str
    metric: float | None = None                      # lm-eval's value of `metric`, 0-1
    stderr: float | None = None
    samples: list[dict] = field(default_factory=list)  # one per example, all subtasks
    subtasks: list[str] = field(default_factory=list)
    n_shot: dict = field(default_factory=dict)


def pick_backend(requested: str) -> str:
    """'auto' -> 'vllm' when vllm is importable and CUDA is present, else 'hf'."""
    if requested != "auto":
        return requested
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"


class ProgressHook:
    """lm-eval's cache hook (called once per finished request by the HF and vLLM models), here
    counting requests for kdtools.progress lines in non-terminal logs."""

    def __init__(self):
        self.lines = None

    def add_partial(self, attr, req, res) -> None:
        if self.lines is not None:
            self.lines.advance(1)


def with_progress(cls):
    """An lm-eval LM class whose request batches report progress lines (kdtools.progress)."""
    from kdtools.progress import Lines

    def requests(method):
        def run(self, reqs, *args, **kwargs):
            with Lines(f"eval {method}", len(reqs), "requests") as self.cache_hook.lines:
                return getattr(cls, method)(self, reqs, *args, **kwargs)
        return run

    def init(self, *args, **kwargs):
        cls.__init__(self, *args, **kwargs)
        self.cache_hook = ProgressHook()

    return type(cls.__name__, (cls,), {"__init__": init, **{m: requests(m) for m in (
        "generate_until", "loglikelihood", "loglikelihood_rolling")}})


def build_lm(weights: str, backend: str, batch_size: int, max_length: int | None,
             chat_template: str | None, seed: int):
    """An lm-eval LM for `weights` whose tokenizer renders the world's chat template, printing
    progress lines in non-terminal logs."""
    from transformers import AutoTokenizer

    from kdtools.chat import chat_template as template_text
    from kdtools.chat import prepare_tokenizer

    if backend == "vllm":
        from lm_eval.models.vllm_causallms import VLLM

        lm = with_progress(VLLM)(pretrained=weights, dtype="auto", batch_size="auto", max_model_len=max_length,
                  seed=seed, max_gen_toks=DEFAULT_MAX_GEN_TOKS)
        if chat_template or not getattr(lm.tokenizer, "chat_template", None):
            text = template_text(chat_template or "tulu")
            lm.tokenizer.chat_template = text
            lm.hf_chat_template = text
        return lm
    import torch
    from lm_eval.models.huggingface import HFLM

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(weights), chat_template)
    cuda = torch.cuda.is_available()
    dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"
    return with_progress(HFLM)(pretrained=weights, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length,
                device="cuda" if cuda else "cpu", dtype=dtype)


def render_templates(benches: list[Benchmark], data_files: dict[str, Path], folder: Path) -> None:
    """Write each kd_* template used, with its data file and generation cap, into `folder`."""
    shutil.copy(TEMPLATES / "kd_hooks.py", folder / "kd_hooks.py")
    for b in benches:
        if not b.template:
            continue
        text = (TEMPLATES / f"{b.task}.yaml").read_text()
        text = text.replace("@DATA@", json.dumps(str(Path(data_files[b.name]).resolve())))
        text = text.replace("@MAX_GEN_TOKS@", str(b.max_gen_toks or DEFAULT_MAX_GEN_TOKS))
        (folder / f"{b.task}.yaml").write_text(text)


def load_tasks(benches: list[Benchmark], include: Path):
    """Build lm-eval Task/Group objects, one top-level per benchmark, with per-benchmark
    few-shot counts set on their leaf tasks; -> (manager, objects, {benchmark: [leaf names]})."""
    from lm_eval.tasks import TaskManager

    # index lm-eval's own registry (thousands of YAMLs, seconds) only when a built-in is used
    builtin = any(not b.template for b in benches)
    manager = TaskManager(include_path=str(include), include_defaults=builtin)
    tops, leaves = [], {}
    for b in benches:
        loaded = manager.load(b.task)
        top = loaded["groups"].get(b.task) or loaded["tasks"][b.task]
        for task in loaded["tasks"].values():
            if b.num_fewshot is not None:
                task.set_config(key="num_fewshot", value=b.num_fewshot)
        tops.append(top)
        leaves[b.name] = sorted(loaded["tasks"])
    return manager, tops, leaves


def evaluate(lm, benches: list[Benchmark], data_files: dict[str, Path], limit: int | None,
             seed: int, language: str) -> dict[str, BenchOutput]:
    """Run every benchmark of a suite in one simple_evaluate call."""
    import lm_eval

    from kdtools.evaluation import hooks

    install_punkt()  # lm-eval's ifeval wants NLTK's punkt_tab: offline, ours
    hooks.LANGUAGE = language
    with tempfile.TemporaryDirectory(prefix="kdtools-tasks-") as tmp:
        include = Path(tmp)
        render_templates(benches, data_files, include)
        manager, tops, leaves = load_tasks(benches, include)
        results = lm_eval.simple_evaluate(
            model=lm, tasks=tops, task_manager=manager, limit=limit, log_samples=True, apply_chat_template=True,
            fewshot_as_multiturn=True, bootstrap_iters=0, random_seed=seed,
            numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )
    if results is None:
        return {}  # a data-parallel run's other ranks: lm-eval gathers the results on rank 0
    return {b.name: collect(b, results, leaves[b.name]) for b in benches}


def collect(bench: Benchmark, results: dict, leaves: list[str]) -> BenchOutput:
    """Pick a benchmark's metric (group aggregate or task value) and its samples."""
    out = BenchOutput(bench.name, subtasks=leaves)
    table = {**results.get("results", {}), **results.get("groups", {})}
    row = table.get(bench.task, {})
    if bench.metric and bench.metric in row:
        value = row[bench.metric]
        out.metric = float(value) if isinstance(value, int | float) else None
        name, _, flt = bench.metric.partition(",")
        err = row.get(f"{name}_stderr,{flt}")
        out.stderr = float(err) if isinstance(err, int | float) else None
    out.n_shot = {t: results.get("n-shot", {}).get(t) for t in leaves}
    for task in leaves:
        for s in results.get("samples", {}).get(task, []):
            out.samples.append(sample_record(bench.name, task, s))
    return out


def sample_record(bench: str, task: str, s: dict) -> dict:
    """One example as the samples file stores it: prompt, generation, target, scores, doc."""
    args = s.get("arguments")
    prompt = args[0][0] if args and isinstance(args[0], list | tuple) else (args[0] if args else None)
    resp = s.get("resps") or [[""]]
    filtered = s.get("filtered_resps") or [""]
    scores = {k: v for k, v in s.items() if isinstance(v, int | float | bool) and k not in ("doc_id",)}
    return {
        "benchmark": bench, "subtask": task, "doc_id": s.get("doc_id"),
        "filter": s.get("filter"),  # lm-eval logs one row per (doc, filter): which one this is
        "prompt": prompt if isinstance(prompt, str) else str(prompt),
        "response": resp[0][0] if isinstance(resp[0], list) else resp[0],
        "filtered": filtered[0] if isinstance(filtered, list) else filtered,
        "target": s.get("target"), "scores": scores, "doc": s.get("doc"),
        **({"options": len(args)} if _loglikelihood(args) else {}),
    }


def _loglikelihood(args) -> bool:
    """Whether a sample's requests are (context, continuation) pairs: one per multiple-choice option."""
    return bool(args) and isinstance(args, list | tuple) and all(
        isinstance(a, list | tuple) and len(a) == 2 and isinstance(a[1], str) for a in args)
