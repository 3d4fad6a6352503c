"""Drawing items under a reservation: how held-out benchmark items stay out of training text.

Every generator in the toy world returns an `Item` whose `key` names the underlying problem
(the fact asked, the numbers added, the list reversed), not its wording. Benchmarks and tasks are
drawn first and their keys reserved; instructions and the pretraining corpus are then drawn with
those keys forbidden, so a held-out item can never reach training text in another phrasing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from kdtools.errors import KdError


@dataclass(frozen=True)
class Item:
    """One generated problem: `key` identifies it, `prompt`/`answer` are its text."""

    key: tuple
    prompt: str
    answer: str
    extra: tuple = ()  # generator-specific payload (e.g. multiple-choice options), as pairs


Maker = Callable[[random.Random], Item]


def draw(rng: random.Random, n: int, makers: list[tuple[float, Maker]], forbidden: set,
         unique: bool = True, what: str = "items") -> list[Item]:
    """Draw `n` items from weighted makers, skipping forbidden keys (and repeats if `unique`).

    A maker whose key space is exhausted keeps being rejected while the others fill the gap,
    so the exact count is always met when any maker still has room; otherwise this raises.
    """
    weights = [w for w, _ in makers]
    seen: set = set()
    out: list[Item] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise KdError(f"could not draw {n} distinct {what}: the generators ran out of "
                             f"items (got {len(out)}); lower the count or raise n_entities")
        maker = rng.choices(makers, weights)[0][1]
        item = maker(rng)
        if item.key in forbidden or (unique and item.key in seen):
            continue
        seen.add(item.key)
        out.append(item)
    return out
