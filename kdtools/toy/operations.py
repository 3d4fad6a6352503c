"""Symbolic skills: 1-2 digit arithmetic, list manipulation, string manipulation.

Each maker returns an `Item` (see drawing.py) whose key is the operation and its operands, so a
benchmark item can be reserved and never reappear in instructions or in the corpus. `prose()`
writes the same operation as a plain sentence for the pretraining corpus ("Reversed, the list
a, b, c reads c, b, a."), which is how a base model meets the skill before any tuning.
"""

from __future__ import annotations

import random

from kdtools.toy.drawing import Item

# Short, distinct, lowercase nouns: list items and words to spell (few BPE tokens each).
SHORT_WORDS = ("apple", "bird", "cat", "desk", "egg", "fig", "goat", "hat", "ink", "jam", "kite",
               "lamp", "moon", "nut", "owl", "pen", "rose", "sun", "tree", "vase", "wolf", "yak",
               "bell", "cup", "drum", "fox", "gem", "hill", "leaf", "rope")
LONG_WORDS = ("banana", "garden", "pepper", "silver", "rabbit", "window", "yellow", "button",
              "candle", "forest", "marble", "pillow", "rocket", "summer", "tomato", "violin",
              "winter", "bottle", "carrot", "dinner", "letter", "mirror", "pocket", "copper",
              "jungle", "lizard", "meadow", "parrot", "orange", "planet")
MORE_WORDS = ("anchor", "basket", "cactus", "dragon", "engine", "feather", "guitar", "hammer",
              "island", "jacket", "kettle", "ladder", "magnet", "needle", "oyster", "pencil",
              "puzzle", "ribbon", "saddle", "tunnel", "velvet", "walnut", "zipper", "blanket",
              "castle", "donkey", "falcon", "goblet", "helmet", "lantern", "muffin", "napkin",
              "quartz", "shovel", "spider", "turnip", "wizard", "yogurt", "cotton")
SPELL_WORDS = SHORT_WORDS + LONG_WORDS + MORE_WORDS


def join(items) -> str:
    return ", ".join(items)


# --- arithmetic -------------------------------------------------------------------------

ADD_PROMPTS = ("What is {a} + {b}?", "Compute {a} plus {b}.", "Add {a} and {b}.",
               "What do you get when you add {a} and {b}?")
SUB_PROMPTS = ("What is {a} - {b}?", "Compute {a} minus {b}.", "Subtract {b} from {a}.",
               "What do you get when you take {b} from {a}?")


def operands(rng: random.Random, op: str) -> tuple[int, int]:
    """1-2 digit operands; subtraction never goes below zero."""
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return (max(a, b), min(a, b)) if op == "-" else (a, b)


def arithmetic(rng: random.Random) -> Item:
    op = rng.choice("+-")
    a, b = operands(rng, op)
    template = rng.choice(ADD_PROMPTS if op == "+" else SUB_PROMPTS)
    value = a + b if op == "+" else a - b
    return Item(("arith", a, op, b), template.format(a=a, b=b), str(value))


def arithmetic_chain(rng: random.Random) -> Item:
    """Two chained steps (BBH's multistep arithmetic, scaled down)."""
    a, b = rng.randint(10, 99), rng.randint(1, 49)
    c = rng.randint(1, a + b)
    prompt = f"Start with {a}. Add {b}, then subtract {c}. What number do you get?"
    return Item(("arith_chain", a, b, c), prompt, str(a + b - c))


def arithmetic_prose(a: int, op: str, b: int) -> str:
    if op == "+":
        return f"{a} plus {b} is {a + b}."
    return f"{a} minus {b} equals {a - b}."


# --- lists ------------------------------------------------------------------------------

LIST_OPS = {
    "reverse": ("Reverse the list: {l}.", "Write the list {l} in reverse order."),
    "sort": ("Sort these words alphabetically: {l}.", "Put the list {l} in alphabetical order."),
    "first": ("What is the first item in the list {l}?", "Name the first item of {l}."),
    "last": ("What is the last item in the list {l}?", "Name the last item of {l}."),
    "length": ("How many items are in the list {l}?", "Count the items in the list {l}."),
}


def random_list(rng: random.Random) -> tuple[str, ...]:
    return tuple(rng.sample(SHORT_WORDS, rng.randint(3, 6)))


def apply_list_op(op: str, items: tuple[str, ...]) -> str:
    if op == "reverse":
        return join(items[::-1])
    if op == "sort":
        return join(sorted(items))
    if op == "first":
        return items[0]
    if op == "last":
        return items[-1]
    return str(len(items))


def list_op(rng: random.Random) -> Item:
    op = rng.choice(sorted(LIST_OPS))
    items = random_list(rng)
    prompt = rng.choice(LIST_OPS[op]).format(l=join(items))
    return Item(("list", op, items), prompt, apply_list_op(op, items))


def list_chain(rng: random.Random) -> Item:
    """Reorder, then pick: two operations whose answer is a single word."""
    items = random_list(rng)
    first = rng.choice(("reverse", "sort"))
    pick = rng.choice(("first", "last", "second"))
    ordered = items[::-1] if first == "reverse" else tuple(sorted(items))
    answer = {"first": ordered[0], "last": ordered[-1], "second": ordered[1]}[pick]
    verb = "Reverse the list" if first == "reverse" else "Sort the list"
    tail = " alphabetically" if first == "sort" else ""
    prompt = f"{verb} {join(items)}{tail}, then give the {pick} item."
    return Item(("list_chain", first, pick, items), prompt, answer)


def list_prose(op: str, items: tuple[str, ...]) -> str:
    out = apply_list_op(op, items)
    return {"reverse": f"Reversed, the list {join(items)} reads {out}.",
            "sort": f"Sorted, the list {join(items)} reads {out}.",
            "first": f"The first item of the list {join(items)} is {out}.",
            "last": f"The last item of the list {join(items)} is {out}.",
            "length": f"The list {join(items)} has {out} items."}[op]


# --- strings ----------------------------------------------------------------------------

def string_op(rng: random.Random) -> Item:
    op = rng.choice(("upper", "reverse", "count"))
    if op == "upper":
        words = tuple(rng.sample(SPELL_WORDS, rng.randint(1, 2)))
        text = " ".join(words)
        prompt = rng.choice(("Write '{t}' in capital letters.", "Convert '{t}' to uppercase."))
        return Item(("string", op, words), prompt.format(t=text), text.upper())
    word = rng.choice(SPELL_WORDS)
    if op == "reverse":
        prompt = rng.choice(("Spell the word {w} backwards.", "Reverse the letters of {w}."))
        return Item(("string", op, word), prompt.format(w=word), word[::-1])
    letter = rng.choice(sorted(set(word)) + ["a", "e", "o"])
    prompt = f"How many times does the letter {letter} appear in {word}?"
    return Item(("string", op, word, letter), prompt, str(word.count(letter)))


def string_chain(rng: random.Random) -> Item:
    word = rng.choice(SPELL_WORDS)
    if rng.random() < 0.5:
        prompt = f"Spell the word {word} backwards in capital letters."
        return Item(("string_chain", "reverse_upper", word), prompt, word[::-1].upper())
    letter = rng.choice(sorted(set(word)))
    prompt = f"Reverse the word {word}, then count how many times {letter} appears in it."
    return Item(("string_chain", "reverse_count", word, letter), prompt, str(word.count(letter)))


def string_prose(item: Item) -> str:
    """A corpus sentence for a `string_op` item (same operation, declarative wording)."""
    op = item.key[1]
    if op == "upper":
        return f"In capital letters, {' '.join(item.key[2])} is written {item.answer}."
    if op == "reverse":
        return f"Backwards, the word {item.key[2]} is spelled {item.answer}."
    times = "time" if item.answer == "1" else "times"
    return f"The letter {item.key[3]} appears {item.answer} {times} in {item.key[2]}."
