"""The optional teacher cache (`kdtools gkd --teacher-cache`): the teacher's top-k
log-probabilities on a dataset's responses, computed once per (teacher, data) and reused by every
student and epoch that distils from that teacher on that data.

    kdtools gkd --student 1b --data 10k --teacher-cache [--teacher-cache-k 64]

Off by default: the paper computes the exact loss. With it, the off-policy half of GKD (the
dataset's responses) skips the teacher's forward pass and uses
`kdtools.losses.fused_topk_generalized_jsd_loss` (the generalized JSD on the k cached tokens plus
one bucket for the rest); on-policy batches (the student's samples) still run the teacher.

    results/<world>/cache/teacher/<teacher>-<key>/
        ids.npy        (n, k) int32    per response token: the teacher's k most likely next tokens
        logprobs.npy   (n, k) float16  their log-probabilities (temperature 1)
        tail.npy       (n,)   float32  log of the probability of every other token
        rows.json      {row key: [offset, tokens]}: row key = sha1 of the row's token ids
        run.json       written last (the key's fields, rows, tokens, bytes per token)

The key hashes the teacher (its config.json, weight file names and sizes, and its own run.json
config hash when kdtools trained it), the data file's sha256, k, max_length and the chat template.
A row is found by its token ids as the collator produced them, so the data pipeline is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from kdtools import manifest, paths, ranks

BATCH_ROWS = 8  # rows per teacher forward while building


def teacher_fingerprint(weights: str) -> dict:
    """What identifies a teacher's weights without reading them all (a 70B is 140 GB)."""
    folder = Path(weights)
    files = sorted((p.name, p.stat().st_size) for p in folder.glob("*.safetensors")) + \
        sorted((p.name, p.stat().st_size) for p in folder.glob("*.bin"))
    done = manifest.read_manifest(folder)
    return {"config_sha256": manifest.file_sha256(folder / "config.json"), "weight_files": files,
            "run_config_hash": done.get("config_hash") if done else None}


def key_fields(teacher_weights: str, data_file: Path, k: int, max_length: int, chat_template: str) -> dict:
    return {"teacher": teacher_fingerprint(teacher_weights), "data_sha256": manifest.file_sha256(data_file),
            "k": k, "max_length": max_length, "chat_template": chat_template, "temperature": 1.0}


def row_key(ids) -> str:
    """sha1 of a row's (unpadded) token ids as int32."""
    import numpy as np

    return hashlib.sha1(np.asarray(ids, dtype=np.int32).tobytes()).hexdigest()


class TeacherCache:
    """A finished cache folder, memory-mapped; `lookup` turns a collated batch into the teacher
    tensors that `fused_topk_generalized_jsd_loss` takes, or None if a row is not cached."""

    def __init__(self, folder: Path):
        import numpy as np

        self.folder = Path(folder)
        self.ids = np.load(self.folder / "ids.npy", mmap_mode="r")
        self.logprobs = np.load(self.folder / "logprobs.npy", mmap_mode="r")
        self.tail = np.load(self.folder / "tail.npy", mmap_mode="r")
        self.rows = json.loads((self.folder / "rows.json").read_text())

    def lookup(self, input_ids, attention_mask, labels):
        """(log_probs (n, k) float32, ids (n, k) int64, tail (n,) float32) for the batch's n
        labelled positions (labels[:, 1:] != -100, row-major), or None."""
        import numpy as np
        import torch

        spans = []
        for ids, mask, lab in zip(input_ids.tolist(), attention_mask.tolist(), labels[:, 1:], strict=True):
            entry = self.rows.get(row_key([i for i, m in zip(ids, mask, strict=True) if m]))
            if entry is None or entry[1] != int((lab != -100).sum()):
                return None
            spans.append(slice(entry[0], entry[0] + entry[1]))

        def gather(array, dtype):
            return torch.from_numpy(np.concatenate([array[s] for s in spans])).to(dtype)

        return gather(self.logprobs, torch.float32), gather(self.ids, torch.long), gather(self.tail, torch.float32)


def build(folder: Path, teacher, tokenizer, rows: list[dict], fields: dict) -> TeacherCache:
    """Run the teacher once over `rows` (chat `messages`), keep the top-k of every response
    token, write the arrays into a staging folder, run.json last, then move it into place."""
    import numpy as np
    import torch
    from trl.experimental.utils import DataCollatorForChatML

    from kdtools.losses import IGNORE_INDEX, teacher_topk

    collate = DataCollatorForChatML(tokenizer=tokenizer, max_length=fields["max_length"])
    weight = teacher.get_output_embeddings().weight
    k = min(fields["k"], weight.shape[0])
    bias = getattr(teacher.get_output_embeddings(), "bias", None)
    chunk = max(64, (1 << 26) // weight.shape[0])
    ids_out, lp_out, tail_out, index, offset = [], [], [], {}, 0
    teacher.eval()
    with torch.no_grad():
        for start in range(0, len(rows), BATCH_ROWS):
            batch = collate([{"messages": r["messages"]} for r in rows[start:start + BATCH_ROWS]])
            batch = {name: t.to(weight.device) for name, t in batch.items()}
            hidden = teacher.get_decoder()(input_ids=batch["input_ids"],
                                           attention_mask=batch["attention_mask"]).last_hidden_state
            labels = batch["labels"][:, 1:]
            h = hidden[:, :-1][labels != IGNORE_INDEX]
            for part in range(0, h.shape[0], chunk):
                lp, ids, tail = teacher_topk(torch.nn.functional.linear(h[part:part + chunk], weight, bias), k)
                lp_out.append(lp.half().cpu().numpy())
                ids_out.append(ids.int().cpu().numpy())
                tail_out.append(tail.float().cpu().numpy())
            for ids, mask, lab in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), labels,
                                      strict=True):
                n = int((lab != IGNORE_INDEX).sum())
                index[row_key([i for i, m in zip(ids, mask, strict=True) if m])] = [offset, n]
                offset += n
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    arrays = {"ids": np.concatenate(ids_out) if ids_out else np.zeros((0, k), np.int32),
              "logprobs": np.concatenate(lp_out) if lp_out else np.zeros((0, k), np.float16),
              "tail": np.concatenate(tail_out) if tail_out else np.zeros((0,), np.float32)}
    for name, array in arrays.items():
        np.save(staging / f"{name}.npy", array)
    (staging / "rows.json").write_text(json.dumps(index))
    nbytes = sum(array.nbytes for array in arrays.values())  # k * (4 + 2) + 4 per token
    manifest.atomic_write_json(staging / paths.MANIFEST, {
        "key": fields, "key_hash": manifest.config_hash(fields), "rows": len(rows),
        "unique_rows": len(index), "tokens": offset, "bytes": nbytes,
        "bytes_per_token": round(nbytes / max(offset, 1), 2)})
    if manifest.read_manifest(folder) is None:  # another job may have finished the same cache first
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    else:
        shutil.rmtree(staging)
    return TeacherCache(folder)


def ensure(results: Path, world: str, teacher_name: str, teacher, tokenizer, rows: list[dict],
           fields: dict) -> tuple[TeacherCache, bool]:
    """-> (the cache for these key fields, whether it was built now); built once, then reused.
    Under several ranks the main process builds it while the others wait for its manifest."""
    folder = paths.teacher_cache_dir(results, world, teacher_name, manifest.config_hash(fields))

    def ready() -> bool:
        done = manifest.read_manifest(folder)
        return done is not None and done.get("key_hash") == manifest.config_hash(fields)

    if ready() or not ranks.is_main():
        ranks.wait_until(ready, f"the teacher cache {folder}")
        return TeacherCache(folder), False
    return build(folder, teacher, tokenizer, rows, fields), True


def deviation(student, teacher, tokenizer, cache: TeacherCache, rows: list[dict], max_length: int,
              beta: float = 0.5) -> dict:
    """How far the cached (top-k) loss is from the exact one for this student on `rows`: the
    token-mean generalized JSD both ways, their relative difference, and the teacher's mean tail
    mass (the probability the cache lumps into one bucket). Forward passes only."""
    import torch
    from trl.experimental.utils import DataCollatorForChatML

    from kdtools.losses import IGNORE_INDEX, generalized_jsd_loss, topk_generalized_jsd_loss

    collate = DataCollatorForChatML(tokenizer=tokenizer, max_length=max_length)
    exact = approx = tail = 0.0
    tokens = 0
    student.eval()
    teacher.eval()
    with torch.no_grad():
        for start in range(0, len(rows), BATCH_ROWS):
            batch = collate([{"messages": r["messages"]} for r in rows[start:start + BATCH_ROWS]])
            found = cache.lookup(batch["input_ids"], batch["attention_mask"], batch["labels"])
            if found is None:
                raise ValueError("a row is not in the teacher cache")
            mask = batch["labels"][:, 1:] != IGNORE_INDEX
            s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
            t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
            exact += float(generalized_jsd_loss(s, t, beta=beta, reduction="sum"))
            approx += float(topk_generalized_jsd_loss(s, *found, beta=beta))
            tail += float(found[2].exp().sum())
            tokens += int(mask.sum())
    exact, approx = exact / max(tokens, 1), approx / max(tokens, 1)
    return {"tokens": tokens, "exact_loss": round(exact, 6), "cached_loss": round(approx, 6),
            "relative_deviation": round(abs(approx - exact) / exact, 4) if exact else 0.0,
            "teacher_tail_mass": round(tail / max(tokens, 1), 4)}
