"""The floor of every benchmark: what an answer that knows nothing scores, through the very
lm-eval tasks, filters and scorers a model's eval uses (`kdtools eval --model floor`).

    scored = floor.evaluate(benches, run_lmeval, score)   # per benchmark: the best knowing-nothing answer

A model that scores at its benchmark's floor has shown nothing; a teacher far above it has
something to distil. The fidelity table of `kdtools report` compares every teacher and student
with these floors (docs/eval.md).

Every item of a benchmark is answered the same way, one lm-eval pass per strategy:

| strategy | generated answer | for |
|---|---|---|
| `copy` | the prompt's last user turn, echoed | copy-the-input (translation, summarization) |
| `empty` | nothing | a model that says nothing (IFEval's "no commas" passes) |
| `majority` | the benchmark's most frequent reference answer | the best constant answer (exact match, letter answers) |
| `stated` | "The answer is <that answer>." | the same through lm-eval's answer-extracting filters |

Multiple choice scored by log-likelihood gets chance, 1/options per item: FloorLM prefers no
option, and the item's score is replaced by the expected accuracy of a uniform guess.

A benchmark's floor is the strategy with the highest score (the mean of its metrics, when it has
several); the eval JSON's `benchmarks.<name>.floor` records every strategy's score and the
winner, and the samples file holds the winner's per-item scores, so a teacher-minus-floor delta
gets a paired interval like any other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

NAME = "floor"   # `kdtools eval --model floor`; its evals live under evals/floor/floor/<suite>/none/
STRATEGIES = ("copy", "empty", "majority", "stated")


def _lm_class():
    from lm_eval.api.model import LM

    class FloorLM(LM):
        """An lm-eval model that knows nothing: it answers every generation request by `strategy`
        and gives every option of a multiple-choice request the same log-likelihood."""

        def __init__(self, strategy: str, answers: dict[str, str] | None = None):
            super().__init__()
            self.strategy, self.answers = strategy, answers or {}

        @property
        def tokenizer_name(self) -> str:
            return f"kdtools-floor-{self.strategy}"

        def chat_template(self, chat_template=False) -> str:
            return "the last user turn, no markup"

        def apply_chat_template(self, chat_history, add_generation_prompt=True) -> str:
            users = [m["content"] for m in chat_history if m.get("role") == "user"]
            return users[-1] if users else ""

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            return [self.answer(r) for r in requests]

        def answer(self, request) -> str:
            if self.strategy == "copy":
                return request.args[0]
            if self.strategy == "empty":
                return ""
            answer = self.answers.get(request.task_name, "")
            return f"The answer is {answer}." if self.strategy == "stated" and answer else answer

        def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            return [(0.0, False) for _ in requests]

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
            return [0.0 for _ in requests]

    return FloorLM


def majority_answers(outputs: dict) -> dict[str, str]:
    """{lm-eval task: its most frequent string target} from one pass's samples (ties: the first)."""
    targets: dict[str, Counter] = {}
    for out in outputs.values():
        for s in out.samples:
            if isinstance(s.get("target"), str) and s["target"].strip():
                targets.setdefault(s["subtask"], Counter())[s["target"].strip()] += 1
    return {task: c.most_common(1)[0][0] for task, c in targets.items()}


def chance(bench, out) -> bool:
    """Multiple choice by log-likelihood (one request per option): score each item 1/options,
    lm-eval's metric their mean. -> whether the benchmark is one."""
    key = (bench.metric or "").partition(",")[0]
    rows = [s for s in out.samples if isinstance(s.get("options"), int) and s["options"] > 1]
    if not key or not rows or len(rows) != len(out.samples):
        return False
    for s in rows:
        for k in list(s["scores"]):
            if k.split(",")[0] in (key, f"{key}_norm", "acc", "acc_norm"):
                s["scores"][k] = 1.0 / s["options"]
    out.metric = sum(1.0 / s["options"] for s in rows) / len(rows)
    out.stderr = None
    return True


def evaluate(benches: list, run_lmeval: Callable[[object], dict], score: Callable) -> dict:
    """Every strategy through `run_lmeval(lm) -> {benchmark: BenchOutput}`, each benchmark scored
    by `score(bench, out) -> (metrics, info, missing)`; -> {benchmark: (metrics, info, missing,
    samples)} of each benchmark's best strategy, `info["floor"]` saying which and what each scored."""
    floor_lm = _lm_class()
    tried: dict[str, dict[str, tuple]] = {b.name: {} for b in benches}
    answers: dict[str, str] = {}
    for strategy in STRATEGIES:
        if strategy in ("majority", "stated") and not answers:
            continue  # no string targets (multiple choice by log-likelihood, IFEval): nothing to repeat
        outputs = run_lmeval(floor_lm(strategy, answers))
        if strategy == "copy":
            answers = majority_answers(outputs)
        for bench in benches:
            out = outputs[bench.name]
            name = "chance" if chance(bench, out) else strategy
            tried[bench.name].setdefault(name, (*score(bench, out), out.samples))
    best = {}
    for bench in benches:
        runs = tried[bench.name]
        value = {s: _value(r[0]) for s, r in runs.items()}
        winner = max(runs, key=lambda s: (value[s] if value[s] is not None else float("-inf")))
        metrics, info, missing, samples = runs[winner]
        tasks = {s.get("subtask") for s in samples}
        info = {**info, "floor": {"strategy": winner, "scores": value,
                                  "answers": {t: a for t, a in answers.items() if t in tasks}}}
        best[bench.name] = (metrics, info, missing, samples)
    return best


def _value(metrics: dict) -> float | None:
    values = [v for v in metrics.values() if v is not None]
    return round(sum(values) / len(values), 4) if values else None
