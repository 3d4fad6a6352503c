"""Amsi, the generated "low-resource" language of the translation task.

A fixed lexicon of invented words (one per English word, never reused) and a systematic grammar
change: no articles, adjectives after their noun, postpositions instead of prepositions, and the
verb last (subject-object-verb). A model must learn both the words and the reordering, which the
corpus teaches through lexicon entries ("In Amsi, the word for dog is bolu.") and a few parallel
sentences, while the task's own sentences stay held out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kdtools.toy.knowledge import NameBank

LANGUAGE = "Amsi"
NOUNS = ("dog", "cat", "bird", "fish", "man", "woman", "child", "king", "farmer", "horse", "tree",
         "river", "house", "boat", "stone", "bread", "apple", "song", "book", "door")
ADJECTIVES = ("big", "small", "old", "young", "red", "green", "happy", "quiet", "fast", "tall",
              "dark", "warm")
TRANSITIVE = ("sees", "eats", "finds", "likes", "carries", "follows", "helps", "builds", "paints",
              "hears")
INTRANSITIVE = ("sleeps", "runs", "sings", "waits", "falls", "laughs")
PREPOSITIONS = ("near", "under", "behind", "inside")
VOCABULARY = NOUNS + ADJECTIVES + TRANSITIVE + INTRANSITIVE + PREPOSITIONS


@dataclass(frozen=True)
class Phrase:
    noun: str
    adjective: str | None

    def english(self) -> str:
        return " ".join(w for w in ("the", self.adjective, self.noun) if w)


@dataclass(frozen=True)
class Sentence:
    """A parsed English sentence: subject, verb, optional object and prepositional phrase."""

    subject: Phrase
    verb: str
    obj: Phrase | None
    prep: str | None
    place: Phrase | None

    def key(self) -> tuple:
        return ("sentence", self.english())

    def english(self) -> str:
        parts = [self.subject.english(), self.verb]
        if self.obj:
            parts.append(self.obj.english())
        if self.prep:
            parts += [self.prep, self.place.english()]
        text = " ".join(parts)
        return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class Language:
    lexicon: dict  # English word -> Amsi word

    def phrase(self, p: Phrase) -> list[str]:
        """Noun first, adjective after it, no article."""
        return [self.lexicon[p.noun]] + ([self.lexicon[p.adjective]] if p.adjective else [])

    def translate(self, s: Sentence) -> str:
        """Subject, object, place + postposition, verb last."""
        words = self.phrase(s.subject)
        if s.obj:
            words += self.phrase(s.obj)
        if s.prep:
            words += self.phrase(s.place) + [self.lexicon[s.prep]]
        words.append(self.lexicon[s.verb])
        text = " ".join(words)
        return text[0].upper() + text[1:] + "."

    def lexicon_sentence(self, rng: random.Random, english: str) -> str:
        word = self.lexicon[english]
        return rng.choice((f"In {LANGUAGE} the word for {english} is {word}.",
                           f"The {LANGUAGE} word {word} means {english}.",
                           f"{english.capitalize()} is {word} in {LANGUAGE}."))


def build_language(bank: NameBank) -> Language:
    return Language({w: bank.word() for w in VOCABULARY})


def random_sentence(rng: random.Random) -> Sentence:
    def phrase() -> Phrase:
        return Phrase(rng.choice(NOUNS), rng.choice(ADJECTIVES) if rng.random() < 0.5 else None)

    subject = phrase()
    transitive = rng.random() < 0.7
    verb = rng.choice(TRANSITIVE if transitive else INTRANSITIVE)
    obj = phrase() if transitive else None
    if rng.random() < 0.4:
        return Sentence(subject, verb, obj, rng.choice(PREPOSITIONS), phrase())
    return Sentence(subject, verb, obj, None, None)
