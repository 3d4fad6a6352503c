"""What `kdtools synth` keeps of a generator's output: extraction and the four filters.

    text = extract_input(raw_completion)          # the new input alone
    reason = InputFilter(train, heldout, ngram=13, near_duplicate=0.8, min_words=3).admit(text)

A candidate meets the filters in this order and is removed by the first one that applies
(`FILTERS`), so every generation is counted exactly once: generated = kept + sum(removed).

  empty           no word character left after extraction.
  degenerate      malformed: holds U+FFFD (bytes that were not UTF-8) or a control character other
                  than tab/newline/return, or word characters (\\w) are under half of the non-space
                  characters; too short: fewer than `min_words` words (\\w+ tokens); or repetitive:
                  with at least 6 words, distinct word 3-grams / all word 3-grams < 0.5, or, with at
                  least 30 characters, distinct character 5-grams / all character 5-grams < 0.3.
  duplicate       equal, after lower-casing and collapsing whitespace, to a training input or to
                  an input already kept.
  near_duplicate  character 5-gram shingle Jaccard >= `near_duplicate` with an input already kept
                  (training inputs are matched exactly only: the toy world's templated inputs are
                  near copies of one another by construction). MinHash signatures (128 hashes) in
                  LSH bands find the candidates; each candidate pair is verified by exact Jaccard.
  contaminated    shares a word `ngram`-gram with a dev or test input (a text shorter than `ngram`
                  words is one gram of its own length, so a short test input copied whole counts).

Everything here is pure Python plus numpy; nothing loads a model.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

import numpy as np

FILTERS = ("empty", "degenerate", "duplicate", "near_duplicate", "contaminated")

SHINGLE = 5                      # characters per shingle (near duplicates)
MIN_WORD_CHAR_SHARE = 0.5        # letters/digits/_ among non-space characters below this = junk
MIN_WORDS_FOR_REPEAT = 6         # shorter texts are never called repetitive
MIN_UNIQUE_WORD_TRIGRAMS = 0.5   # distinct/all word 3-grams below this = repetitive
MIN_CHARS_FOR_REPEAT = 30
MIN_UNIQUE_CHAR_5GRAMS = 0.3     # distinct/all character 5-grams below this = repetitive
NUM_PERM = 128                   # MinHash hashes per signature
LSH_RECALL = 0.99                # P(a pair at exactly the threshold becomes a candidate) >= this
SKETCH_MARGIN = 0.25             # candidates whose MinHash estimate is this far below are skipped

_WORD = re.compile(r"\w+")
_WORD_CHARS = re.compile(r"\w")
# U+FFFD marks bytes that were not valid UTF-8; C0/C1 controls other than tab/newline/return
_MALFORMED = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LABEL = re.compile(r"^(?:new\s+)?(?:in|input)\s*:\s*", re.IGNORECASE)
_MARKER = re.compile(r"\b(?:Out|In)\s*:")
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("«", "»"), ("`", "`"))


def extract_input(raw: str) -> str:
    """The new input in a raw completion: strip; drop leading 'In:'/'Input:' labels; cut at the
    first 'Out:' or 'In:' marker (the model went on to answer, or to write another example);
    remove quotes wrapping the whole text. Returns '' when nothing is left."""
    text = raw.strip()
    while True:
        before = text
        text = _LABEL.sub("", text, count=1).strip()
        if marker := _MARKER.search(text):
            text = text[:marker.start()].strip()
        for left, right in _QUOTES:
            if len(text) >= 2 and text.startswith(left) and text.endswith(right):
                text = text[len(left):-len(right)].strip()
        if text == before:
            return text


def normalise(text: str) -> str:
    """Lower case, whitespace runs collapsed to one space: the key of exact duplicates."""
    return " ".join(text.lower().split())


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def is_degenerate(text: str, min_words: int) -> bool:
    """Malformed, too short (< min_words words) or highly repetitive (see the module docstring)."""
    if _MALFORMED.search(text):
        return True
    visible = re.sub(r"\s", "", text)
    if visible and len(_WORD_CHARS.findall(visible)) / len(visible) < MIN_WORD_CHAR_SHARE:
        return True
    tokens = words(text)
    if len(tokens) < min_words:
        return True
    if len(tokens) >= MIN_WORDS_FOR_REPEAT:
        trigrams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
        if len(set(trigrams)) / len(trigrams) < MIN_UNIQUE_WORD_TRIGRAMS:
            return True
    flat = normalise(text)
    if len(flat) >= MIN_CHARS_FOR_REPEAT:
        grams = [flat[i:i + 5] for i in range(len(flat) - 4)]
        if len(set(grams)) / len(grams) < MIN_UNIQUE_CHAR_5GRAMS:
            return True
    return False


def word_ngrams(text: str, n: int) -> set[str]:
    """Word n-grams (space-joined, lower case); a text of fewer than n words is one gram."""
    tokens = words(text)
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def shingles(text: str, k: int = SHINGLE) -> set[str]:
    """Character k-grams of the normalised text (the whole text when shorter than k)."""
    flat = normalise(text)
    if len(flat) <= k:
        return {flat}
    return {flat[i:i + k] for i in range(len(flat) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def lsh_params(threshold: float, num_perm: int = NUM_PERM, recall: float = LSH_RECALL) -> tuple[int, int]:
    """(bands, rows per band) for MinHash LSH: the most rows per band (fewest false candidates)
    such that a pair with Jaccard == threshold still shares a band with probability >= recall."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if 1 - (1 - threshold ** rows) ** bands >= recall:
            return bands, rows
    return num_perm, 1


_ROLL = np.uint64(1_000_003)


def _shingle_hashes(flat: str, k: int) -> np.ndarray:
    """32-bit hashes of the character k-grams of `flat` (a rolling polynomial over code points,
    vectorised: no per-shingle Python call), distinct and sorted."""
    codes = np.frombuffer(flat.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    width = min(k, len(codes))
    h = np.zeros(len(codes) - width + 1, dtype=np.uint64)
    for j in range(width):
        h = h * _ROLL + codes[j:j + len(h)]       # uint64 arithmetic wraps: still a hash
    return np.unique((h >> np.uint64(32)) ^ (h & np.uint64(0xFFFFFFFF)))


class NearDuplicateIndex:
    """MinHash + LSH banding over character shingles, for incremental near-duplicate search.

    `query(text)` returns (id of a stored text with exact shingle Jaccard >= threshold or None,
    signature); `insert(text, signature)` stores a text. Deterministic: the hash functions come
    from a fixed seed, candidates are verified in insertion order."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM, k: int = SHINGLE, seed: int = 1):
        self.threshold, self.k = threshold, k
        self.bands, self.rows = lsh_params(threshold, num_perm)
        rng = random.Random(seed)
        used = self.bands * self.rows
        # multiply-shift hashing: (a*h + b) mod 2^64 (uint64 wraps), high 32 bits; a odd
        self.a = np.array([rng.randrange(1 << 64) | 1 for _ in range(used)], dtype=np.uint64)[:, None]
        self.b = np.array([rng.randrange(1 << 64) for _ in range(used)], dtype=np.uint64)[:, None]
        self.buckets: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self.texts: list[str] = []
        self.signatures = np.zeros((1024, used), dtype=np.uint32)

    def signature(self, text: str) -> np.ndarray:
        hashes = _shingle_hashes(normalise(text), self.k)[None, :]
        return ((self.a * hashes + self.b) >> np.uint64(32)).min(axis=1).astype(np.uint32)

    def _keys(self, signature: np.ndarray) -> Iterable[tuple[int, bytes]]:
        for band in range(self.bands):
            yield band, signature[band * self.rows:(band + 1) * self.rows].tobytes()

    def query(self, text: str) -> tuple[int | None, np.ndarray]:
        signature = self.signature(text)
        candidates = set()
        for band, key in self._keys(signature):
            candidates.update(self.buckets[band].get(key, ()))
        if candidates:
            ids = np.array(sorted(candidates))
            # the share of equal hashes estimates the Jaccard (std <= 0.045 for 120+ hashes): pairs
            # far below the threshold are dropped before the exact (and slower) check
            estimate = (self.signatures[ids] == signature).mean(axis=1)
            mine = shingles(text, self.k)
            for other in ids[estimate >= self.threshold - SKETCH_MARGIN].tolist():
                if jaccard(mine, shingles(self.texts[other], self.k)) >= self.threshold:
                    return other, signature
        return None, signature

    def insert(self, text: str, signature: np.ndarray) -> int:
        item = len(self.texts)
        self.texts.append(text)
        if item == len(self.signatures):
            self.signatures = np.concatenate([self.signatures, np.zeros_like(self.signatures)])
        self.signatures[item] = signature
        for band, key in self._keys(signature):
            self.buckets[band].setdefault(key, []).append(item)
        return item


class InputFilter:
    """The filters in order, with state: what was kept so far (exact and near duplicates), the
    training inputs (exact duplicates) and the dev/test n-grams (contamination)."""

    def __init__(self, train_inputs: Iterable[str], heldout_inputs: Iterable[str], ngram: int,
                 near_duplicate: float, min_words: int):
        self.ngram, self.min_words = ngram, min_words
        self.seen = {normalise(x) for x in train_inputs}
        self.heldout = set().union(*(word_ngrams(x, ngram) for x in heldout_inputs))
        self.near = NearDuplicateIndex(near_duplicate)

    def admit(self, text: str) -> str | None:
        """None if `text` is kept (and remembered), else the name of the filter that removed it."""
        if not words(text):
            return "empty"
        if is_degenerate(text, self.min_words):
            return "degenerate"
        key = normalise(text)
        if key in self.seen:
            return "duplicate"
        match, signature = self.near.query(text)
        if match is not None:
            return "near_duplicate"
        if not self.heldout.isdisjoint(word_ngrams(text, self.ngram)):
            return "contaminated"
        self.seen.add(key)
        self.near.insert(text, signature)
        return None


def min_words_for(train_inputs: Iterable[str]) -> int:
    """The 'too short' bound: half the word count of the shortest training input, at least 1."""
    counts = [len(words(x)) for x in train_inputs]
    return max(1, min(counts, default=2) // 2)
