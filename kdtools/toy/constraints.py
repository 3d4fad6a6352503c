"""Verifiable writing prompts: IFEval-style constraints and InFoBench-style requirements.

Both write about an entity of the knowledge base and come with a gold response built to satisfy
every constraint, so checkers.py can be tested on gold and broken answers, and the instruction
pool can teach the skill with the same generator. Numbers in the constraints (word limits,
sentence counts) are read off the gold response, so every prompt is satisfiable.
"""

from __future__ import annotations

import random
import re

from kdtools.toy.drawing import Item
from kdtools.toy.knowledge import World, article

CAPITAL = "change_case:english_capital"
LOWER = "change_case:english_lowercase"
KEYWORDS = "keywords:existence"
NUM_WORDS = "length_constraints:number_words"
END = "startend:end_checker"
BULLETS = "detectable_format:number_bullet_lists"
NO_COMMA = "punctuation:no_comma"
QUOTATION = "startend:quotation"
IFEVAL_IDS = (CAPITAL, LOWER, KEYWORDS, NUM_WORDS, END, BULLETS, NO_COMMA, QUOTATION)
CONFLICTS = ({CAPITAL, LOWER}, {BULLETS, QUOTATION})

KEYWORD_POOL = ("famous", "quiet", "lucky", "clever", "friendly", "brave", "calm", "kind",
                "busy", "polite")
END_PHRASES = ("Is there anything else I can help with?", "Any other questions?",
               "That is all.", "Let me know if you need more.")
TOPIC_PROMPTS = ("Write a short text about {e}.", "Tell me about {e}.", "Describe {e} briefly.")


def count_words(text: str) -> int:
    """IFEval's word count (nltk's RegexpTokenizer(r"\\w+"))."""
    return len(re.findall(r"\w+", text))


def count_sentences(text: str) -> int:
    return len(re.findall(r"[.!?]+(?:\s|$)", text))


def pick_ids(rng: random.Random) -> list[str]:
    while True:
        ids = rng.sample(IFEVAL_IDS, rng.randint(1, 3))
        if not any(pair <= set(ids) for pair in CONFLICTS):
            return ids


def ifeval_item(rng: random.Random, world: World, entities: list[str]) -> Item:
    """An IFEval-style prompt; extra = (instruction_id_list, kwargs, gold)."""
    e = rng.choice(entities)
    ids = pick_ids(rng)
    facts = rng.sample(world.facts_of(e), 3)
    sentences = [f.statement(rng.randrange(4)) for f in facts]
    kwargs: dict[str, dict] = {i: {} for i in ids}
    if BULLETS in ids:
        n = rng.randint(2, 3)
        kwargs[BULLETS] = {"num_bullets": n}
        lines = [f"* {s}" for s in sentences[:n]]
    else:
        lines = [" ".join(sentences[:rng.randint(1, 2)])]
    if KEYWORDS in ids:
        words = rng.sample(KEYWORD_POOL, rng.randint(1, 2))
        kwargs[KEYWORDS] = {"keywords": words}
        lines[-1] += f" {e} is {' and '.join(words)}."
    if END in ids:
        phrase = rng.choice(END_PHRASES)
        kwargs[END] = {"end_phrase": phrase}
        if BULLETS in ids:
            lines.append(phrase)
        else:
            lines[-1] += f" {phrase}"
    gold = "\n".join(lines)
    if QUOTATION in ids:
        gold = f'"{gold}"'
    if CAPITAL in ids:
        gold = gold.upper()
    if LOWER in ids:
        gold = gold.lower()
    if NUM_WORDS in ids:
        if rng.random() < 0.5:
            kwargs[NUM_WORDS] = {"relation": "less than",
                                 "num_words": count_words(gold) + rng.randint(3, 10)}
        else:
            kwargs[NUM_WORDS] = {"relation": "at least",
                                 "num_words": max(1, count_words(gold) - rng.randint(0, 3))}
    phrases = [ifeval_phrase(i, kwargs[i]) for i in ids]
    prompt = " ".join([rng.choice(TOPIC_PROMPTS).format(e=e)] + phrases)
    return Item(("ifeval", prompt), prompt, gold,
                extra=(("instruction_id_list", tuple(ids)),
                       ("kwargs", tuple(kwargs[i] for i in ids))))


def ifeval_phrase(instruction_id: str, kw: dict) -> str:
    if instruction_id == CAPITAL:
        return "Your entire response should be in English and in all capital letters."
    if instruction_id == LOWER:
        return "Your entire response should be in English and in all lowercase letters."
    if instruction_id == KEYWORDS:
        return f"Include the keywords {' and '.join(kw['keywords'])} in the response."
    if instruction_id == NUM_WORDS:
        return f"Answer with {kw['relation']} {kw['num_words']} words."
    if instruction_id == END:
        return f"Finish your response with the exact phrase '{kw['end_phrase']}'."
    if instruction_id == BULLETS:
        return (f"Your answer must contain exactly {kw['num_bullets']} bullet points. "
                "Use markdown bullet points such as: * This is a point.")
    if instruction_id == NO_COMMA:
        return "Do not use any commas in your response."
    return "Wrap your entire response with double quotation marks."


STARTS = ("Meet", "This is", "Say hello to")
MENTIONS = {"job": ("Mention their job.", "Does the response say that {e} works as {av}?"),
            "home": ("Mention where they live.", "Does the response say that {e} lives in {v}?"),
            "pet": ("Mention their pet.", "Does the response say that {e} has a pet {v}?")}
FACT_SENTENCES = {"job": "{e} works as {av}.", "home": "{e} lives in {v}.",
                  "pet": "{e} has a pet {v}."}


def infobench_item(rng: random.Random, world: World, people: list[str]) -> Item:
    """An InFoBench-style item about a person given in the input.

    extra = (input, decomposed questions, labels, checks, subset); prompt = the instruction.
    """
    e = rng.choice(people)
    value = {a: world.fact(e, a).value for a in ("job", "home", "pet")}
    hard = rng.random() < 0.5
    mentions = rng.sample(("job", "home", "pet"), 2 if hard else 1)
    styles = rng.sample(("start", "exclaim", "sentences", "max_words", "case", "avoid_pet"),
                        rng.randint(2, 3) if hard else 1)
    if "pet" in mentions and "avoid_pet" in styles:
        styles.remove("avoid_pet")
    start = rng.choice(STARTS)
    case = rng.choice(("lowercase", "uppercase"))
    sentences = [f"{start} {e}."] if "start" in styles else []
    sentences += [FACT_SENTENCES[a].format(e=e, v=value[a], av=article(value[a])) for a in mentions]
    gold = " ".join(sentences)
    if "exclaim" in styles:
        gold = gold[:-1] + "!"
    if "case" in styles:
        gold = gold.lower() if case == "lowercase" else gold.upper()
    n_sent, n_words = count_sentences(gold), count_words(gold) + rng.randint(2, 6)

    asks = ["Write a short introduction of the person in the input."]
    rows = [(f"Does the response mention {e}?", ["Content"], {"type": "contains", "text": e})]
    for a in mentions:
        ask, question = MENTIONS[a]
        asks.append(ask)
        rows.append((question.format(e=e, v=value[a], av=article(value[a])), ["Content"],
                     {"type": "contains", "text": value[a]}))
    for s in styles:
        ask, question, label, check = {
            "start": (f"Begin with '{start}'.", f"Does the response begin with '{start}'?",
                      "Format", {"type": "starts_with", "text": start}),
            "exclaim": ("End with an exclamation mark.",
                        "Does the response end with an exclamation mark?", "Format",
                        {"type": "ends_with", "text": "!"}),
            "sentences": (f"Use exactly {n_sent} sentences.",
                          f"Does the response have exactly {n_sent} sentences?", "Number",
                          {"type": "sentence_count", "n": n_sent}),
            "max_words": (f"Use fewer than {n_words} words.",
                          f"Does the response use fewer than {n_words} words?", "Number",
                          {"type": "max_words", "n": n_words}),
            "case": (f"Write only in {case} letters.",
                     f"Is the response written only in {case} letters?", "Style", {"type": case}),
            "avoid_pet": ("Do not mention the pet.", "Does the response avoid mentioning the pet?",
                          "Content", {"type": "not_contains", "text": value["pet"]}),
        }[s]
        asks.append(ask)
        rows.append((question, [label], check))
    instruction = " ".join(asks)
    text_input = f"Name: {e}\nJob: {value['job']}\nCity: {value['home']}\nPet: {value['pet']}"
    return Item(("infobench", instruction, text_input), instruction, gold,
                extra=(("input", text_input), ("decomposed_questions", tuple(r[0] for r in rows)),
                       ("question_label", tuple(tuple(r[1]) for r in rows)),
                       ("checks", tuple(r[2] for r in rows)),
                       ("subset", "Hard_set" if hard else "Easy_set")))


def infobench_prompt(row: dict) -> str:
    """The text a model sees for an InFoBench row: instruction, blank line, input."""
    return f"{row['instruction']}\n\n{row['input']}" if row["input"] else row["instruction"]
