"""Short two-person dialogues with reference summaries, for the DialogSum-style task.

Each topic fills a script with concrete details (a day, a number, a price, a city of the knowledge
base) and the reference summary is a template over the same details, so it can be learned: a
model has to pick the details out of the dialogue and put them in the summary's order.
Optional small-talk turns vary the length between 4 and 8 turns.
"""

from __future__ import annotations

import random

from kdtools.toy.drawing import Item

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
TIMES = ("nine", "ten", "eleven", "noon", "two", "four", "six", "seven", "eight")
ITEMS = ("jacket", "lamp", "bag", "hat", "clock", "chair", "kettle", "scarf")
SHADES = ("red", "blue", "green", "black", "white", "brown")
SYMPTOMS = ("cough", "headache", "sore throat", "fever", "back pain")
ADVICE = ("rest and drink water", "take a warm bath", "sleep more", "eat light food")
TRANSPORT = ("train", "bus", "boat", "car")
RELATIVES = ("aunt", "uncle", "sister", "brother", "grandmother", "cousin")
PLACES = ("the park", "the library", "the bus", "the office", "the cafe", "the gym")
TOPICS = ("booking", "shopping", "doctor", "travel", "lost item")


def booking(rng, cities):
    d = {"n": rng.randint(2, 8), "day": rng.choice(DAYS), "time": rng.choice(TIMES),
         "city": rng.choice(cities)}
    turns = [("1", f"I would like a table for {d['n']} on {d['day']}."),
             ("2", "Of course. What time would you like?"),
             ("1", f"At {d['time']} please. We are coming from {d['city']}."),
             ("2", f"Done. A table for {d['n']} on {d['day']} at {d['time']}.")]
    summary = (f"#Person1# books a table for {d['n']} on {d['day']} at {d['time']}. "
               f"#Person1# comes from {d['city']}.")
    return d, turns, summary


def shopping(rng, cities):
    d = {"item": rng.choice(ITEMS), "shade": rng.choice(SHADES), "price": rng.randint(5, 90),
         "buys": rng.random() < 0.5}
    turns = [("1", f"How much is the {d['shade']} {d['item']}?"),
             ("2", f"It is {d['price']} dollars."),
             ("1", "I will take it." if d["buys"] else "That is too much for me."),
             ("2", "Here you are." if d["buys"] else "Maybe next time then.")]
    end = (f"buys the {d['shade']} {d['item']} for {d['price']} dollars." if d["buys"] else
           f"does not buy the {d['shade']} {d['item']} because {d['price']} dollars is too much.")
    return d, turns, "#Person1# " + end


def doctor(rng, cities):
    d = {"symptom": rng.choice(SYMPTOMS), "day": rng.choice(DAYS), "advice": rng.choice(ADVICE),
         "back": rng.randint(2, 9)}
    turns = [("2", "What seems to be the problem?"),
             ("1", f"I have had a {d['symptom']} since {d['day']}."),
             ("2", f"You should {d['advice']}. Come back in {d['back']} days if it is not better."),
             ("1", "Thank you doctor. I will.")]
    summary = (f"#Person1# has had a {d['symptom']} since {d['day']}. #Person2# tells #Person1# "
               f"to {d['advice']} and to come back in {d['back']} days.")
    return d, turns, summary


def travel(rng, cities):
    d = {"city": rng.choice(cities), "day": rng.choice(DAYS), "by": rng.choice(TRANSPORT),
         "who": rng.choice(RELATIVES)}
    turns = [("2", "Are you going anywhere this week?"),
             ("1", f"I am going to {d['city']} on {d['day']}."),
             ("2", "How will you get there?"),
             ("1", f"By {d['by']}. I will visit my {d['who']}.")]
    summary = (f"#Person1# is going to {d['city']} by {d['by']} on {d['day']} "
               f"to visit #Person1#'s {d['who']}.")
    return d, turns, summary


def lost_item(rng, cities):
    d = {"item": rng.choice(ITEMS), "shade": rng.choice(SHADES), "place": rng.choice(PLACES),
         "day": rng.choice(DAYS), "found": rng.random() < 0.5}
    turns = [("1", f"I lost my {d['shade']} {d['item']} at {d['place']} on {d['day']}."),
             ("2", "Is it old?" if d["found"] else "Did you ask anyone there?"),
             ("1", "Yes it is quite old." if d["found"] else "Not yet."),
             ("2", "We found it. Here it is." if d["found"] else "You should go back and ask.")]
    outcome = ("#Person2# found it." if d["found"]
               else "#Person2# tells #Person1# to go back and ask.")
    summary = f"#Person1# lost a {d['shade']} {d['item']} at {d['place']} on {d['day']}. {outcome}"
    return d, turns, summary


SCRIPTS = {"booking": booking, "shopping": shopping, "doctor": doctor, "travel": travel,
           "lost item": lost_item}
OPENINGS = (("1", "Hello."), ("2", "Hi. How can I help you?"))
CLOSINGS = (("1", "Thanks a lot."), ("2", "You are welcome."))


def dialogue(rng: random.Random, cities: list[str]) -> Item:
    """A dialogue item: prompt = the dialogue text, answer = summary, extra = the topic."""
    topic = rng.choice(TOPICS)
    details, turns, summary = SCRIPTS[topic](rng, cities)
    if rng.random() < 0.5:  # a greeting; only "Hello." when #Person2# opens the script
        turns = list(OPENINGS if turns[0][0] == "1" else OPENINGS[:1]) + turns
    if rng.random() < 0.5:
        turns = turns + list(CLOSINGS)
    text = "\n".join(f"#Person{who}#: {line}" for who, line in turns)
    key = ("dialogue", topic) + tuple(sorted(details.items()))
    return Item(key, text, summary, extra=(("topic", topic),))
