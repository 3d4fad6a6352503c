"""Rule-based verifiers for the toy IFEval and InFoBench rows (used by the eval stage).

`check_ifeval` follows IFEval's own checks for the instruction ids the toy world generates,
including its "loose" mode: an instruction also passes loosely if it holds for the response with
its first and/or last line removed, or with '*' removed. `check_infobench` decides each
decomposed yes/no question from the machine-checkable rule stored next to it, which is how the
toy world replaces InFoBench's LLM judge.
"""

from __future__ import annotations

import re

from kdtools.toy.constraints import (
    BULLETS,
    CAPITAL,
    END,
    KEYWORDS,
    LOWER,
    NO_COMMA,
    NUM_WORDS,
    QUOTATION,
    count_sentences,
    count_words,
)


def follows(instruction_id: str, kwargs: dict, value: str) -> bool:
    """One IFEval instruction on one response text (IFEval's checker semantics)."""
    if instruction_id == CAPITAL:
        return value.isupper()
    if instruction_id == LOWER:
        return value.islower()
    if instruction_id == KEYWORDS:
        return all(re.search(k, value, flags=re.IGNORECASE) for k in kwargs["keywords"])
    if instruction_id == NUM_WORDS:
        n = count_words(value)
        limit = kwargs["num_words"]
        return n < limit if kwargs["relation"] == "less than" else n >= limit
    if instruction_id == END:
        return value.strip().strip('"').lower().endswith(kwargs["end_phrase"].strip().lower())
    if instruction_id == BULLETS:
        stars = re.findall(r"^\s*\*[^\*].*$", value, flags=re.MULTILINE)
        dashes = re.findall(r"^\s*-.*$", value, flags=re.MULTILINE)
        return len(stars) + len(dashes) == kwargs["num_bullets"]
    if instruction_id == NO_COMMA:
        return "," not in value
    if instruction_id == QUOTATION:
        value = value.strip()
        return len(value) > 1 and value[0] == '"' and value[-1] == '"'
    raise ValueError(f"unknown IFEval instruction id {instruction_id!r}")


def loose_variants(response: str) -> list[str]:
    """IFEval's loose transformations: drop the first/last line, remove '*'."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(),
           "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", "")] + cut + [c.replace("*", "") for c in cut]


def check_ifeval(row: dict, response: str) -> dict:
    """{"strict": every instruction holds, "loose": every one holds in some loose variant,
    "per_instruction": the strict result of each instruction, in row order}."""
    pairs = list(zip(row["instruction_id_list"], row["kwargs"], strict=True))
    strict = [bool(response.strip()) and follows(i, kw, response) for i, kw in pairs]
    variants = loose_variants(response)
    loose = [any(v.strip() and follows(i, kw, v) for v in variants) for i, kw in pairs]
    return {"strict": all(strict), "loose": all(loose), "per_instruction": strict}


def check_rule(check: dict, response: str) -> bool:
    text = response.strip()
    kind = check["type"]
    if kind == "contains":
        return check["text"].lower() in text.lower()
    if kind == "not_contains":
        return not re.search(rf"\b{re.escape(check['text'])}\b", text, flags=re.IGNORECASE)
    if kind == "starts_with":
        return text.lower().startswith(check["text"].lower())
    if kind == "ends_with":
        return text.endswith(check["text"])
    if kind == "sentence_count":
        return count_sentences(text) == check["n"]
    if kind == "max_words":
        return count_words(text) < check["n"]
    if kind == "lowercase":
        return text.islower()
    if kind == "uppercase":
        return text.isupper()
    raise ValueError(f"unknown InFoBench check type {kind!r}")


def check_infobench(row: dict, response: str) -> list[bool]:
    """One bool per decomposed question (DRFR = their mean over a benchmark)."""
    return [check_rule(c, response) for c in row["checks"]]
