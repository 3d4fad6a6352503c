"""NLTK's `punkt_tab` data for lm-eval's IFEval, shipped so that it runs without a network.

lm-eval's ifeval counts sentences with NLTK's Punkt tokenizer and, at import, calls
`nltk.download("punkt_tab")` unless the data is found; offline that fails and the sentence-count
checks raise LookupError. kdtools ships a minimal English `punkt_tab` model in
kdtools/evaluation/nltk_data (Punkt's algorithm with a hand-written list of common English
abbreviations, no learned collocations or orthographic statistics). Its folder is appended to
`nltk.data.path`, so an official punkt_tab installed with `nltk.download("punkt_tab")` (on a
machine with network) is found first and wins. Only the `length_constraints:number_sentences`
instruction depends on it (see docs/eval.md).
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "nltk_data"


def install_punkt() -> str:
    """Make `tokenizers/punkt_tab/english` findable; return the folder that provides it."""
    import nltk

    if str(DATA) not in nltk.data.path:
        nltk.data.path.append(str(DATA))
    return str(nltk.data.find("tokenizers/punkt_tab/english/"))
