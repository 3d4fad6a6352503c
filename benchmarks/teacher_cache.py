"""The optional teacher cache (`kdtools gkd --teacher-cache`): bytes per token, the loss's
deviation from the exact one, and the teacher forward passes it saves across the paper's grid.

    PYTHONPATH=. .venv/bin/python benchmarks/teacher_cache.py --results /tmp/smoke-results \
        [--world smoke] [--student 1b] [--teacher 70b-it] [--data 10k] [--k 8,64,256]

1. Deviation: for the world's base `--student` and `--teacher` (used as is; build the world first
   with `kdtools --world smoke --results R toy` and `... data`), the cache is built for each k on
   the `--data` subset and the token-mean generalized JSD (beta 0.5) is computed exactly and from
   the cache (`kdtools.teachercache.deviation`), with the teacher's mean tail mass.
   Bytes per token = k * (4 B id + 2 B float16 log-prob) + 4 B float32 tail.
2. Forward passes saved: the paper grid's GKD jobs are read from the workflow's own dry run
   (`snakemake -n all_tables --config world=paper --printshellcmds`: every `kdtools ... gkd`
   command); jobs that share a teacher and a training set share one cache. With 2 epochs and
   lambda 0.5, a run passes the teacher over the set's rows 2 x 0.5 = 1 time off-policy; the
   cache passes once per (teacher, set): saved = (runs - 1) x rows per shared pair. The general
   subsets' rows come from paper.yaml; a domain task's (unknown here) are counted in units of its
   training set (|D|).
Prints one JSON object (last line). Not a test: run it by hand; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EPOCHS, LMBDA = 2, 0.5


def deviations(args) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kdtools import teachercache
    from kdtools.chat import prepare_tokenizer
    from kdtools.data import read_jsonl, subset_path
    from kdtools.world import load_world

    world = load_world(args.world, args.results)
    student_dir, teacher_dir = world.resolve_model(args.student), world.resolve_model(args.teacher)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(teacher_dir), world.chat_template)
    student = AutoModelForCausalLM.from_pretrained(student_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    data_file = subset_path(world, args.data)
    rows = read_jsonl(data_file)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.k:
            fields = teachercache.key_fields(teacher_dir, data_file, k, world.train.max_length,
                                             world.chat_template)
            cache, _ = teachercache.ensure(Path(tmp), world.name, args.teacher, teacher, tokenizer, rows, fields)
            made = json.loads((cache.folder / "run.json").read_text())
            dev = teachercache.deviation(student, teacher, tokenizer, cache, rows, world.train.max_length)
            out.append({"k": k, "vocab": teacher.config.vocab_size, "bytes_per_token": made["bytes_per_token"],
                        **dev})
    return out


def paper_grid() -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "all_tables", "-n",
                               "--cores", "1", "--printshellcmds", "--config", "world=paper",
                               f"results={tmp}"], cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"error": proc.stderr[-1000:]}
    import yaml

    sizes = yaml.safe_load((REPO / "workflow" / "config" / "paper.yaml").read_text())["data"]["sizes"]
    full_rows = 939_343  # paper.yaml: full = every row of Tulu 3 SFT
    runs = defaultdict(int)
    for cmd in re.findall(r"kdtools\.cli .*? gkd (.*?)'? >", proc.stdout):
        opts = dict(re.findall(r"--([\w-]+) (\S+)", cmd))
        task, size = opts.get("task", "general"), opts["data"]
        # mix trains on human + synthetic rows: a set of its own; two_stage's GKD stage is on D
        data = f"{task}/{size}" + (f"+synthetic-{opts['synthetic']}" if opts.get("method") == "mix" else "")
        runs[(opts.get("teacher", "70b"), data)] += 1
    general, domain = {"exact": 0, "cached": 0}, {"exact": 0, "cached": 0}
    pairs = []
    for (teacher, data), n in sorted(runs.items()):
        task, size = data.split("/")
        rows = (sizes.get(size) or full_rows) if task == "general" else 1  # domain: units of |D|
        side = general if task == "general" else domain
        side["exact"] += n * EPOCHS * (1 - LMBDA) * rows
        side["cached"] += rows
        pairs.append({"teacher": teacher, "data": data, "gkd_runs": n})
    return {
        "gkd_jobs": sum(runs.values()), "teacher_data_pairs": len(runs),
        "pairs_shared_by_more_than_one_run": sum(n > 1 for n in runs.values()),
        "general_teacher_row_passes": {**general, "saved": general["exact"] - general["cached"],
                                       "saved_fraction": round(1 - general["cached"] / general["exact"], 3)},
        "domain_teacher_row_passes_in_units_of_D": {**domain, "saved": domain["exact"] - domain["cached"]},
        "pairs": pairs,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", required=True, help="a results root with the world built")
    p.add_argument("--world", default="smoke")
    p.add_argument("--student", default="1b")
    p.add_argument("--teacher", default="70b-it")
    p.add_argument("--data", default="10k")
    p.add_argument("--k", type=lambda s: [int(x) for x in s.split(",")], default=[8, 64, 256])
    args = p.parse_args(argv)
    summary = {"world": args.world, "student": args.student, "teacher": args.teacher, "data": args.data,
               "deviation": deviations(args), "paper_grid": paper_grid(),
               "assumptions": {"epochs": EPOCHS, "lmbda": LMBDA}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
