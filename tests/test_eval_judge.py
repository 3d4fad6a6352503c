"""InFoBench judging: the OpenAI-compatible path against a real local HTTP server, the local
HF judge with a tiny model, the rules judge, the cache, and DRFR arithmetic."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kdtools.errors import KdError
from kdtools.evaluation import judge as judges
from kdtools.evaluation.metrics import drfr

ROWS = [
    {"input": "Name: Ana", "instruction": "Introduce Ana. Mention her job.",
     "decomposed_questions": ["Does the response mention Ana?", "Does it say her job?",
                              "Is it in lowercase?"]},
    {"input": "", "instruction": "Write a haiku.",
     "decomposed_questions": ["Is it a haiku?", "Does it mention the sea?"]},
]
RESPONSES = ["ana is a baker.", "Waves on the sea shore"]


class FakeJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible server: YES when the question mentions Ana or the sea, 'maybe'
    for haikus (unparseable), NO otherwise. Records every request."""

    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, payload, code=200):
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self._send({"object": "list", "data": [{"id": "judge-70b", "object": "model"}]})
        else:
            self._send({"error": "not found"}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.requests.append(body)
        question = body["messages"][-1]["content"]
        last = question.rsplit("Question:\n", 1)[-1]
        answer = "maybe" if "haiku" in last else ("YES" if ("Ana" in last or "sea" in last) else "No.")
        self._send({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]})


@pytest.fixture()
def server():
    FakeJudge.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("answer,expected", [
    ("YES", True), ("yes, it does", True), ("No.", False), ("The answer is NO", False),
    ("maybe", None), ("I would say YES, not NO", None), ("", None),
])
def test_parse_yes_no(answer, expected):
    assert judges.parse_yes_no(answer) is expected


def test_openai_judge_over_http_drfr_and_cache(server, tmp_path):
    assert judges.check_endpoint(server + "/v1/", None) == "judge-70b"
    judge = judges.OpenAIJudge(server, "judge-70b")
    cache = judges.JudgeCache(tmp_path / "judge.jsonl")
    judgments, info = judges.judge_rows(ROWS, RESPONSES, judge, cache)
    # row 1: Ana yes, job no, lowercase no; row 2: 'maybe' is unparseable -> conversation ends
    assert judgments == [[True, False, False], [None, None]]
    assert info == {"questions": 5, "unparsed": 1, "cache_hits": 0}
    assert drfr(judgments) == 20.0  # 1 of 5
    assert len(FakeJudge.requests) == 4  # 3 turns for row 1, 1 for row 2
    first = next(r for r in FakeJudge.requests if len(r["messages"]) == 1 and "Ana" in r["messages"][0]["content"])
    assert first["model"] == "judge-70b" and first["temperature"] == 0.0
    assert first["messages"][0]["content"].startswith(judges.SYS_MSG)
    assert 'Input:\n"Name: Ana"' in first["messages"][0]["content"]
    # later turns carry the whole conversation, as InFoBench's script does
    third = [r for r in FakeJudge.requests if len(r["messages"]) == 5][0]
    assert [m["role"] for m in third["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    # a second run is answered from the disk cache: no HTTP request at all
    FakeJudge.requests = []
    again, info2 = judges.judge_rows(ROWS, RESPONSES, judge, judges.JudgeCache(tmp_path / "judge.jsonl"))
    assert again == judgments and FakeJudge.requests == [] and info2["cache_hits"] == 4
    # another judge model does not reuse those answers
    key_a = judges.JudgeCache.key("openai:judge-70b", [{"role": "user", "content": "q"}])
    key_b = judges.JudgeCache.key("openai:other", [{"role": "user", "content": "q"}])
    assert key_a != key_b


def test_check_endpoint_fails_fast(server):
    with pytest.raises(KdError, match="not reachable"):
        judges.check_endpoint(f"http://127.0.0.1:{closed_port()}", "x", timeout=2)
    with pytest.raises(KdError, match="does not serve 'other'"):
        judges.check_endpoint(server, "other")


def test_rules_judge_uses_stored_checks():
    row = {"decomposed_questions": ["Mentions Ana?", "Lowercase?"],
           "checks": [{"type": "contains", "text": "Ana"}, {"type": "lowercase"}]}
    judgments, _ = judges.judge_rows([row, row], ["ana bakes", "Ana Bakes"], judges.RulesJudge(), None)
    assert judgments == [[True, True], [True, False]]
    assert drfr(judgments) == 75.0


def test_hf_judge_parsing_caching_and_arithmetic(smoke_results, tmp_path):
    """A tiny local model answers junk; what is tested is the plumbing around it."""
    model = smoke_results / "smoke" / "world" / "base" / "70b-it"
    judge = judges.HFJudge(str(model), "tulu", batch_size=4, max_tokens=4)
    cache = judges.JudgeCache(tmp_path / "judge.jsonl")
    judgments, info = judges.judge_rows(ROWS, RESPONSES, judge, cache)
    assert [len(j) for j in judgments] == [3, 2]
    flat = [j for row in judgments for j in row]
    assert all(j in (True, False, None) for j in flat)
    assert info["questions"] == 5
    assert drfr(judgments) == round(100 * sum(j is True for j in flat) / 5, 2)
    asked = len(cache.answers)
    assert asked >= 2  # at least each row's first question
    again, info2 = judges.judge_rows(ROWS, RESPONSES, judge, judges.JudgeCache(tmp_path / "judge.jsonl"))
    assert again == judgments and info2["cache_hits"] == asked
