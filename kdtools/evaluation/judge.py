"""InFoBench's DRFR: each instruction's decomposed yes/no requirements, answered by a judge.

    judge = make_judge(kind="openai", url="http://judge:8000", model="meta-llama/Llama-3.3-70B-Instruct")
    judgments, info = judge_rows(rows, responses, judge, cache)     # DRFR = metrics.drfr(judgments)

Judges: "openai" (any OpenAI-compatible server, e.g. `vllm serve`: plain HTTP POSTs to
/v1/chat/completions, temperature 0), "hf" (a local transformers model, greedy), and "rules"
(the toy world: each requirement's stored machine check, kdtools/toy/checkers.py).
The LLM judges follow InFoBench's evaluation script: one conversation per response, the
questions asked one after another as turns, each answer read as YES/NO; an answer that is
neither ends the conversation and the remaining requirements count as not satisfied.
Answers are cached on disk, keyed by a hash of the judge's identity and the full conversation.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kdtools.errors import KdError

# InFoBench's judging instructions (evaluation/eval.py of the InFoBench repository).
SYS_MSG = (
    "Based on the provided Input (if any) and Generated Text, answer the ensuing Questions with "
    "either a YES or NO choice. Your selection should be based on your judgment as well as the "
    "following rules:\n\n"
    "- YES: Select 'YES' if the generated text entirely fulfills the condition specified in the "
    "question. However, note that even minor inaccuracies exclude the text from receiving a 'YES' "
    "rating. As an illustration, consider a question that asks, \"Does each sentence in the "
    "generated text use a second person?\" If even one sentence does not use the second person, "
    "the answer should NOT be 'YES'. To qualify for a 'YES' rating, the generated text must be "
    "entirely accurate and relevant to the question\n\n"
    "- NO: Opt for 'NO' if the generated text fails to meet the question's requirements or "
    "provides no information that could be utilized to answer the question. For instance, if the "
    "question asks, \"Is the second sentence in the generated text a compound sentence?\" and the "
    "generated text only has one sentence, it offers no relevant information to answer the "
    "question. Consequently, the answer should be 'NO'."
)


def first_turn(row: dict, response: str, question: str) -> str:
    if row.get("input"):
        return f"{SYS_MSG}\n\nInput:\n\"{row['input']}\"\n\nGenerated Text:\n\"{response}\"\n\nQuestion:\n{question}\n"
    return f"{SYS_MSG}\n\nGenerated Text:\n\"{response}\"\n\nQuestion:\n{question}\n"


def parse_yes_no(answer: str) -> bool | None:
    """InFoBench's reading of a judge answer: a leading yes/no, else an unambiguous YES or NO
    somewhere in it, else None."""
    low = answer.strip().lower()
    if low.startswith("yes"):
        return True
    if low.startswith("no"):
        return False
    has_yes, has_no = "YES" in answer, "NO" in answer
    if has_yes != has_no:
        return has_yes
    return None


class JudgeCache:
    """{hash(judge identity, conversation) -> answer}, one JSON line per answer, appended."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.answers: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash
                self.answers[entry["key"]] = entry["answer"]
        self.hits = 0

    @staticmethod
    def key(identity: str, messages: list[dict]) -> str:
        blob = json.dumps({"judge": identity, "messages": messages}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        found = self.answers.get(key)
        self.hits += found is not None
        return found

    def put(self, key: str, identity: str, answer: str) -> None:
        self.answers[key] = answer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:  # one short append per answer
            f.write(json.dumps({"key": key, "judge": identity, "answer": answer}, ensure_ascii=False) + "\n")


# --- judges -----------------------------------------------------------------------------------

class RulesJudge:
    """The toy world's judge: the machine check stored with each requirement."""

    identity = "rules"

    def describe(self) -> dict:
        return {"kind": "rules"}


class OpenAIJudge:
    """An OpenAI-compatible chat endpoint (vLLM, TGI, ...), called with urllib."""

    def __init__(self, url: str, model: str, max_tokens: int = 16, timeout: float = 120, workers: int = 16):
        self.url, self.model, self.max_tokens = base_url(url), model, max_tokens
        self.timeout, self.workers = timeout, workers
        self.identity = f"openai:{model}"

    def describe(self) -> dict:
        return {"kind": "openai", "url": self.url, "model": self.model, "max_tokens": self.max_tokens}

    def ask_one(self, messages: list[dict]) -> str:
        body = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": self.max_tokens}
        reply = http_json(f"{self.url}/v1/chat/completions", body, self.timeout)
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise KdError(f"judge at {self.url} answered without choices[0].message.content: {str(reply)[:200]}") from exc

    def ask(self, conversations: list[list[dict]]) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(self.ask_one, conversations))


class HFJudge:
    """A local transformers model, greedy, its chat template (or the world's) applied."""

    def __init__(self, path: str, chat_template: str | None, batch_size: int = 8, max_tokens: int = 16):
        self.path, self.chat_template = path, chat_template
        self.batch_size, self.max_tokens = batch_size, max_tokens
        self.identity = f"hf:{Path(path).resolve() if Path(path).exists() else path}"
        self.model = self.tokenizer = None

    def describe(self) -> dict:
        return {"kind": "hf", "model": self.path, "max_tokens": self.max_tokens}

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from kdtools.chat import prepare_tokenizer

        tok = AutoTokenizer.from_pretrained(self.path)
        self.tokenizer = prepare_tokenizer(tok, None if tok.chat_template else self.chat_template)
        self.tokenizer.padding_side = "left"
        cuda = torch.cuda.is_available()
        self.model = AutoModelForCausalLM.from_pretrained(
            self.path, dtype=torch.bfloat16 if cuda else torch.float32, device_map="auto" if cuda else None)
        self.model.eval()

    def ask(self, conversations: list[list[dict]]) -> list[str]:
        import torch

        if self.model is None:
            self.load()
        out = []
        for i in range(0, len(conversations), self.batch_size):
            texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                     for c in conversations[i:i + self.batch_size]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
            with torch.no_grad():
                gen = self.model.generate(**enc, max_new_tokens=self.max_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            out += [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return out


# --- HTTP ---------------------------------------------------------------------------------------

def base_url(url: str) -> str:
    """'http://h:8000/v1/' -> 'http://h:8000' (both forms are what users paste)."""
    url = url.rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _headers() -> dict:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("KDTOOLS_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def http_json(url: str, body: dict | None, timeout: float, retries: int = 3) -> dict:
    """GET (body None) or POST JSON; retry transient failures (connection, 429, 5xx)."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(retries):
        try:
            req = urllib.request.Request(url, data=data, headers=_headers(), method="GET" if body is None else "POST")
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 500, 502, 503, 504) or attempt == retries - 1:
                detail = exc.read().decode(errors="replace")[:200]
                raise KdError(f"judge request {url} failed: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == retries - 1:
                raise KdError(f"judge at {url} unreachable: {getattr(exc, 'reason', exc)}") from exc
        time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def check_endpoint(url: str, model: str | None, timeout: float = 10) -> str:
    """Fail fast (before any model loads) unless `url` serves an OpenAI-compatible API; return
    the judge model's name: `model`, or the only/first one the server lists."""
    root = base_url(url)
    try:
        listing = http_json(f"{root}/v1/models", None, timeout, retries=1)
    except KdError as exc:
        raise KdError(
            f"InFoBench judge {root} is not reachable ({str(exc).split(': ', 1)[-1]}): start the server "
            "(e.g. `vllm serve meta-llama/Llama-3.3-70B-Instruct --port 8000`) or fix --judge-url"
        ) from exc
    served = [m.get("id") for m in listing.get("data", []) if isinstance(m, dict)]
    if model is None:
        if not served:
            raise KdError(f"judge {root} lists no models at /v1/models: pass --judge-model <served name>")
        return served[0]
    if served and model not in served:
        raise KdError(f"judge {root} does not serve '{model}' (it serves: {', '.join(served)}): fix --judge-model")
    return model


# --- DRFR -----------------------------------------------------------------------------------------

def judge_rows(rows: list[dict], responses: list[str], judge, cache: JudgeCache | None,
               progress=None) -> tuple[list[list[bool | None]], dict]:
    """One list of requirement judgments per row (True/False, None = no usable answer) and a
    summary {questions, unparsed, cache_hits}. Rows are judged turn by turn: turn k asks every
    still-open conversation its k-th question, in one batch."""
    from kdtools.toy.checkers import check_infobench

    if isinstance(judge, RulesJudge):
        out = [check_infobench(row, resp) for row, resp in zip(rows, responses, strict=True)]
        if progress:
            progress(sum(len(r) for r in out))
        return out, {"questions": sum(len(r) for r in out), "unparsed": 0, "cache_hits": 0}
    judgments: list[list[bool | None]] = [[None] * len(r["decomposed_questions"]) for r in rows]
    convs: list[list[dict]] = [[] for _ in rows]
    open_rows = set(range(len(rows)))
    unparsed = 0
    for k in range(max((len(r["decomposed_questions"]) for r in rows), default=0)):
        batch = [i for i in sorted(open_rows) if k < len(rows[i]["decomposed_questions"])]
        asks = []
        for i in batch:
            q = rows[i]["decomposed_questions"][k]
            turn = first_turn(rows[i], responses[i], q) if k == 0 else f"{q}\n"
            asks.append(convs[i] + [{"role": "user", "content": turn}])
        keys = [JudgeCache.key(judge.identity, m) for m in asks]
        answers = [cache.get(key) if cache else None for key in keys]
        todo = [j for j, a in enumerate(answers) if a is None]
        for j, a in zip(todo, judge.ask([asks[j] for j in todo]) if todo else [], strict=True):
            answers[j] = a
            if cache:
                cache.put(keys[j], judge.identity, a)
        for i, msgs, answer in zip(batch, asks, answers, strict=True):
            convs[i] = msgs + [{"role": "assistant", "content": answer}]
            verdict = parse_yes_no(answer)
            judgments[i][k] = verdict
            if verdict is None:
                unparsed += 1
                open_rows.discard(i)
        if progress:
            progress(len(batch))
    total = sum(len(r) for r in judgments)
    return judgments, {"questions": total, "unparsed": unparsed, "cache_hits": cache.hits if cache else 0}
