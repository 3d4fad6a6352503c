"""Score translations with COMET; runs in COMET's OWN environment, not kdtools's.

    envs/comet-venv/bin/python -I kdtools/evaluation/comet_score.py \
        --model Unbabel/wmt22-comet-da --input rows.jsonl --output scores.json

unbabel-comet pins transformers<5 and numpy<2, so kdtools (transformers 5) calls this file as a
subprocess with that environment's python (`make comet-env`). It imports nothing from kdtools.
Input: JSON lines {"src", "mt", "ref"}. Output: {"system_score", "scores", "model",
"comet_version", "n"}, scores on COMET's own 0-1 scale. `--model` is a hub id (downloaded
into the COMET cache, or found there offline) or the path of a checkpoint (.ckpt) in COMET's
layout (<dir>/checkpoints/model.ckpt beside <dir>/hparams.yaml).
"""

import argparse
import json
import os
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gpus", type=int, default=None, help="default: 1 when CUDA is available, else 0")
    args = parser.parse_args()

    import torch
    from comet import __version__, download_model, load_from_checkpoint

    rows = [json.loads(line) for line in Path(args.input).read_text().splitlines() if line.strip()]
    data = [{"src": r["src"], "mt": r["mt"], "ref": r["ref"]} for r in rows]
    if Path(args.model).is_file():
        checkpoint = args.model
    else:
        try:
            checkpoint = download_model(args.model, saving_directory=os.environ.get("COMET_CACHE"))
        except Exception as exc:  # COMET hides network errors as "not supported"
            print(f"cannot get COMET model {args.model} ({exc}); offline, pass the path of a "
                  "downloaded checkpoints/model.ckpt instead", file=sys.stderr)
            return 3
    model = load_from_checkpoint(checkpoint)
    gpus = args.gpus if args.gpus is not None else int(torch.cuda.is_available())
    out = model.predict(data, batch_size=args.batch_size, gpus=gpus, progress_bar=True)
    payload = {"system_score": float(out.system_score), "scores": [float(s) for s in out.scores],
               "model": args.model, "comet_version": __version__, "n": len(data)}
    Path(args.output).write_text(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
