"""Progress lines in logs that are not a terminal: done/total, rate and ETA, at most every N s;
what generation prints shard by shard in a Slurm-like (non-terminal) log."""

from __future__ import annotations

import io
from kdtools.generate import Sampling, generate
from kdtools.progress import Lines


class Log(io.StringIO):
    def isatty(self):
        return False


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_lines_say_done_rate_and_eta(monkeypatch):
    monkeypatch.delenv("KDTOOLS_PROGRESS_SECONDS", raising=False)
    clock = iter([0.0, 120.0, 120.0])                     # start; 300 prompts 2 minutes later
    monkeypatch.setattr("kdtools.progress.time.monotonic", lambda: next(clock))
    log = Log()
    lines = Lines("annotate", 1000, done=200, every_s=60, stream=log)
    lines.advance(300)
    lines.close()
    assert log.getvalue().splitlines() == [
        "annotate: 200/1,000 prompts to start with",
        "annotate: 500/1,000 prompts (50.0%) in 2m00s, 2.50 prompts/s, ETA 3m20s"]


def test_lines_are_rate_limited_and_quiet_on_a_terminal(monkeypatch):
    monkeypatch.delenv("KDTOOLS_PROGRESS_SECONDS", raising=False)
    log = Log()
    with Lines("eval", 10, "requests", every_s=3600, stream=log) as lines:
        for _ in range(10):
            lines.advance()
    assert log.getvalue().splitlines()[1:] and len(log.getvalue().splitlines()) == 2   # start + the end
    tty = Terminal()
    with Lines("eval", 10, stream=tty, every_s=0) as lines:
        lines.advance(10)
    assert tty.getvalue() == ""                               # the terminal has its progress bar
    monkeypatch.setenv("KDTOOLS_PROGRESS_SECONDS", "0")
    with Lines("eval", 10, stream=tty) as lines:
        lines.advance(10)
    assert "eval: 10/10 prompts (100.0%)" in tty.getvalue()    # asked for explicitly


def test_generation_prints_progress_per_shard_to_a_log(smoke_results, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KDTOOLS_PROGRESS_SECONDS", "0")
    model = str(smoke_results / "smoke" / "world" / "base" / "1b")
    prompts = [[{"role": "user", "content": f"Say {i}."}] for i in range(6)]
    generate(model, prompts, tmp_path / "g", Sampling(max_new_tokens=2, batch_size=3, shard_size=3), seed=0,
             chat_template="tulu", label="synth")
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("synth: ")]
    assert lines[0] == "synth: 0/6 prompts to start with"
    assert [x.split()[1] for x in lines[1:]] == ["3/6", "6/6"]
