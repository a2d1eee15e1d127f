"""What a caller said, understood: which option of a question it names, and whether
someone is in danger now. Pure: no Flask, no Twilio, no Redis.

Callers do not say "option one": they say "a mi chamita se la llevaron" or "el patrón me
cobra el pasaje y no me deja ir". A `Matcher`, built once per question and language
when a menu version is built, reads what was said as features:

- the words, folded (case, accents, ñ) and reduced to their Snowball stems, so "niñas",
  "ninas" and "niña" are one word; pairs of adjacent stems; letter 4-grams of each stem,
  which survive a recognition error ("denunsiar", "serradas");
- each option's keywords (menu.toml), heard also through a recognition error close to
  them (rapidfuzz), two words the recogniser split ("en carcelada") or a word glued to a
  short one before it ("mehija"); the danger words likewise; a child's age ("mi hija de
  13 años") as a child's word;

and weighs them with small logistic regressions (scikit-learn) trained on the options'
example phrases (config/examples.toml) and keywords. Where a question's options have
examples and danger is asked about (the first question), one model of the whole
utterance (`_Whole`: TF-IDF of its words, word pairs and letter n-grams) weighs the
options and "someone is in danger now" together, so danger competes with every line
for each utterance; elsewhere a detector for danger, tuned for recall, sits beside one
for the options. Decisions, in order:

1. a lone spoken digit ("dos", "press one") is that key;
2. danger likely, and a danger word or sign heard: the emergency path; possible (or
   likely without one): ask "is someone in danger right now?"; a short answer naming
   one line with no word or sign of danger: that line;
3. a child named (a whole word, or an age under 18): the child option;
4. one option clearly ahead: that option; two close: ask which of the two; else not
   understood.

Every `Decision` says which keywords or example phrases decided it (the menu's words,
never the caller's), so the admin page can show why and events can record how. Training
takes a few seconds when a menu version is built and is cached by its phrases; a decision
takes well under a millisecond (the weights are applied in plain Python).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

import numpy as np
import snowballstemmer
from rapidfuzz import fuzz, process

from ivr import model_cache

NUMBER_WORDS = {
    "cero": "0", "uno": "1", "una": "1", "dos": "2", "tres": "3", "cuatro": "4",
    "cinco": "5", "seis": "6", "siete": "7", "ocho": "8", "nueve": "9",
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
# Ages a recogniser may write in words: "de catorce años" names a child.
AGE_WORDS = {
    **{w: int(d) for w, d in NUMBER_WORDS.items() if int(d) > 1},  # not "a cada uno"
    "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14, "quince": 15,
    "dieciseis": 16, "diecisiete": 17, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
}
# "anios": "años" as a recogniser may spell it.
AGE_UNITS = {"anos", "anitos", "ano", "anios", "anio", "years", "year", "yo", "yrs"}
# "like 12 or 13", "they are 14 and 15", "tienen 14 y 15": two ages said together, and
# nothing counted after them ("como 10 o 12 personas" is not an age).
AGE_PAIR_BEFORE = {"like", "about", "around", "are", "como", "tienen", "tiene"}
AGE_PAIR_JOIN = {"or", "and", "o", "y"}
AGE_PAIR_AFTER = {"at", "in", "en", "from", "de", "del"}
AGE_BEFORE = (["a", "los"], ["is", "only"], ["she", "is"], ["he", "is"], ["i", "am"])
AGE_BEFORE_ONE = {"aged", "im", "i'm", "she's", "he's", "age"}
HAS_AGE = {"tiene", "tengo"}  # "la chama tiene 15 y ...", not "tiene 3 hijos"
# "mi chino de 16 se fue", "my daughter's 15 and": a person named, then the age alone.
PERSON_WORDS = {
    "hijo", "hija", "chino", "china", "sobrino", "sobrina", "pelado", "pelada", "pelao",
    "nieto", "nieta", "muchacho", "muchacha", "chamo", "chama", "primo", "prima", "hermano",
    "hermana", "nino", "nina", "sardina", "mijo", "mija", "son", "daughter", "boy", "girl",
    "niece", "nephew", "cousin", "brother", "sister", "grandson", "granddaughter", "kid"}
PERSON_IS = {"is"}  # "my son is 25", "my daughter is 15, she...": not "is 2 hours away"
MEASURES = {"hours", "hour", "minutes", "days", "weeks", "months", "blocks", "miles", "km"}
AGE_END = {"y", "e", "and", "no", "pero", "but", "anos"}
# After a person's age a pronoun starts what happens to them ("mi prima tiene catorce, la
# pusieron..."); after anyone else's number it counts people ("la señora tiene 6 le cosen
# ropa", "como 10 o 12 se quedaron").
AGE_PRONOUNS = {"la", "lo", "le", "se", "me", "she", "he"}
ADULT_AGE = 18
# Years that measure time, not a person: "hace 2 años", "two years ago", "me tuvo dos años
# sin sueldo", "viví 10 años en Venezuela", "llevo tres años acá". An age is said with
# "de" or "of" before it ("una niña de 12 años en la calle"), which these never cancel.
AGE_OF = {"de", "of"}
TIME_OF = {"despues", "antes", "mas", "after", "before", "more"}  # "después de 4 años"
DURATION_BEFORE = {"hace", "durante", "por", "for", "llevo", "lleva", "llevamos", "llevan",
                   "tuvo", "tuvieron", "vivi", "vivo", "estuve", "estuvo", "trabaje",
                   "despues", "after", "last", "past", "over", "spent", "almost", "casi"}
DURATION_AFTER = {"ago", "atras", "en", "sin", "aca", "aqui", "alla", "here", "there",
                  "in", "working", "trabajando", "viviendo", "living", "back", "later",
                  "despues", "mas", "more"}
# Words that may surround a spoken digit ("marco el dos", "press one", "number 3").
DIGIT_FILLERS = {
    "marco", "marcar", "marque", "el", "la", "numero", "opcion", "press", "number",
    "option", "the", "i", "choose", "quiero", "por", "favor", "please", "es", "is", "it",
}
# Short words a recogniser glues to the next one: "mehija" is "me hija", "lapolicia".
GLUED = ("mis", "mi", "me", "la", "el", "su", "tu", "un", "de", "lo", "al", "a", "y", "my")
STEMMERS = {"es": "spanish", "en": "english"}
FUZZY_MIN_LEN = 5  # shorter stems must match exactly: "chamo" is not "chamba"
FUZZY_RATIO = 86  # rapidfuzz ratio for a recognition error ("secuestardo")
PREFIX_SLACK = 4  # a keyword stem also matches a word this much longer that starts with it

# How sure a decision must be: probabilities of the two regressions (the other questions).
# Tuned by cross-validation on the learn part of bench/understanding_set (never on its test
# part).
DANGER = 0.40  # straight to the emergency path
DANGER_ASK = 0.20  # "¿Alguien está en peligro ahora mismo?"
ROUTE = 0.35  # the best option routes at this probability...
MARGIN = 0.10  # ...when it leads the second by this much; else the two are asked
EITHER = 0.55  # the two best together at least this likely: ask between them
EVIDENCE = 0.2  # without a keyword, the nearest example must be this similar (cosine)
KEYWORD_WEIGHT = 3.0  # a keyword heard counts as much as this many ordinary features
WORD_SAMPLE_WEIGHT = 0.3  # a danger word, as a sample for the detector, beside examples
SIGN_WEIGHT = 3.0  # a kind of danger sign heard, likewise (for the danger detector)
NGRAM = 4
NGRAM_WEIGHT = 0.5
REGULARISATION = 10.0  # scikit-learn's C, for the option model
DANGER_REGULARISATION = 1.0  # softer for danger: a weak sign lands in the asking band
# The whole-utterance model (_Whole): its words and word pairs, and letter 2-5-grams of
# each word, weighed by TF-IDF; one logistic regression over the options and danger.
# Tuned like the others, by leaving one writer out (bench/understanding --learn): 0.40
# and 0.25 found 1.1 points more emergencies at once than 0.50 and 0.35, and 1.1 more with
# the question, for 1.6 more false emergencies (4.7 % of the others). Sending at once only
# when a danger word or sign was heard cost 0.9 points of them at once (they are asked
# instead) and no false emergency more: a phrase of unknown words is never sent. On the
# learn part of 5,194 (20 writers), a sign heard at 0.30 sent 0.7 points more emergencies
# at once (they were asked before), and a lead of 0.02 routed 0.5 points more callers
# without the either/or question, with the same recall with the question and false rate.
WHOLE_DANGER = 0.30  # danger this likely, with a sign of danger heard: the emergency path
WHOLE_ASK = 0.25  # this likely (or likelier than any option): the danger question
# ...and from this, with a sign of danger heard, where the line understood is one whose
# callers are often in danger now (Choice.near_danger). Leaving one writer out of the
# learn part of 6,488 (25 writers), it found 98.8 % of emergencies at once or by the
# question, against 97.6 % without, for 4.6 % false emergencies against 3.6 % and 92.3 %
# first try against 93.4 %: recall comes first. At every line it cost 0.4 points more
# false emergencies (simulated) and found none more.
WHOLE_SIGN_ASK = 0.15
SHORT_ANSWER = 3  # words, fillers aside: a short answer naming one line goes there
WHOLE_MARGIN = 0.02  # the best option's lead that routes (MARGIN's); 0.05 asked more
WHOLE_REGULARISATION = 20.0
WHOLE_LETTERS = (2, 5)
WHOLE_MIN_PHRASES = 2  # a letter n-gram counts when this many phrases have it
# The fit stops at this tolerance (scikit-learn's default is 1e-4): half the time to build
# a menu's matchers, and the same decisions by cross-validation.
FIT_TOLERANCE = 1e-3


WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def tokens(text: str) -> list[str]:
    """Lower-case words without accents or punctuation: "¿Niña?" -> ["nina"]. An
    apostrophe inside a word stays ("won't", "daughter's"); one at its edge is a quote
    mark or a dropped letter ("'teen companions'", "pa' la casa") and goes."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return WORD.findall(folded)


@lru_cache(maxsize=32768)
def stem(word: str, lang: str = "es") -> str:
    """The Snowball stem of a folded word: "ninas" -> "nin", "kidnapped" -> "kidnap"."""
    return _stemmer(lang).stemWord(word)


@lru_cache(maxsize=4)
def _stemmer(lang: str):
    # snowballstemmer hands out PyStemmer's C stemmer (a dependency): the same stems
    return snowballstemmer.stemmer(STEMMERS.get(lang, "spanish"))


# Words that carry no meaning of their own: what is left must resemble an example
# ("mmm bueno pues" shares nothing with anyone). As stems, in both languages.
FILLER_WORDS = (
    "bueno pues eh mmm aja este esto ese eso hola alo oiga mire vea ve buenas buenos dias "
    "tardes noches senor senora senorita si no ya y o a de la el los las un una que en por "
    "para con me te se le lo mi su yo usted es hay parce pana vale mija mijo ay dios gracias "
    "favor well um uh hmm hello hi hey yes ok okay so the an and or of to in on is it i you "
    "my please thanks thank sir madam oh"
)
FILLERS = frozenset(stem(w, lang) for w in FILLER_WORDS.split() for lang in STEMMERS)


# Spellings a recogniser (or a hurried hand) swaps because they sound alike in Spanish:
# "denunsiar", "amarada", "en serradas", "ablar", "bictima". Applied to stems on both sides.
SOUNDS = [("rr", "r"), ("ll", "y"), ("v", "b"), ("z", "s"), ("ce", "se"), ("ci", "si"),
          ("qu", "k"), ("ca", "ka"), ("co", "ko"), ("cu", "ku"), ("ch", "\0"), ("h", ""),
          ("\0", "ch")]


def _ages_sounding() -> dict[str, int]:
    return {sounds(w): n for w, n in AGE_WORDS.items() if len(w) > 3}


@lru_cache(maxsize=8192)  # every word said is looked up: "peligro" at every answer
def sounds(word: str) -> str:
    """A rough Spanish sound-alike key of a word: "serradas" and "cerradas" meet."""
    for a, b in SOUNDS:
        word = word.replace(a, b)
    return word


AGES_SOUNDING = _ages_sounding()  # "catorse" is "catorce"
DIGITS_SOUNDING = {sounds(w): d for w, d in NUMBER_WORDS.items()}  # "sero", "sinco"


def spoken_digit(text: str) -> str | None:
    """The key a short answer names: "1", "dos", "marco el tres", "press one"."""
    words = tokens(text)
    digits = [NUMBER_WORDS.get(w) or DIGITS_SOUNDING.get(sounds(w), w)
              for w in words if w not in DIGIT_FILLERS]
    if len(digits) == 1 and re.fullmatch(r"\d", digits[0]):
        return digits[0]
    return None


def minor_age(words: list[str]) -> int | None:
    """An age under 18: "de 13 años", "catorce añitos", "a los 13", "a 15 year old",
    "aged 14", "I'm 15", "she is only 14", "like 12 or 13", "tiene catorse" (as a
    recogniser may spell it)."""
    return next((age for age in ages_said(words) if age < ADULT_AGE), None)


def adult_age(words: list[str]) -> int | None:
    """An age of 18 or more, said the same ways: "mi hija de 23"."""
    return next((age for age in ages_said(words) if age >= ADULT_AGE), None)


def ages_said(words: list[str]) -> Iterator[int]:
    """Every person's age said, in order."""
    ages = [_age(word) for word in words]
    for i, age in enumerate(ages):
        if age is None or age < 1 or _duration(words, i):
            continue
        after, before = words[i + 1:i + 2], words[max(0, i - 2):i]
        if (after and after[0] in AGE_UNITS) or before[-2:] in AGE_BEFORE or (
                len(before) == 2 and before[0] in PERSON_WORDS and (before[1] in AGE_OF or (
                    before[1] in PERSON_IS and not (after and after[0] in MEASURES)))) or (
                before[-1:] and before[-1] in AGE_BEFORE_ONE) or (
                before[-1:] and _has_age(before) and (not after or after[0] in AGE_END or (
                    after[0] in AGE_PRONOUNS and before[0] in PERSON_WORDS))):
            yield age
            continue
        paired = ages[i + 2] if i + 2 < len(ages) else None
        then = words[i + 3:i + 4]
        if (age < ADULT_AGE and before[-1:] and before[-1] in AGE_PAIR_BEFORE and after
                and after[0] in AGE_PAIR_JOIN and paired is not None
                and 1 <= paired < ADULT_AGE
                and (not then or then[0] in AGE_UNITS or then[0] in AGE_END
                     or then[0] in AGE_PAIR_AFTER)):
            yield age


def _has_age(before: list[str]) -> bool:
    """Whether the words before a bare number give someone's age: "tiene", "mi hija de",
    "daughter's"."""
    last = before[-1]
    return (last in HAS_AGE or last in PERSON_WORDS or last.removesuffix("'s") in PERSON_WORDS
            or (last in AGE_OF and len(before) > 1 and before[-2] in PERSON_WORDS))


def _duration(words: list[str], i: int) -> bool:
    """Whether the number at `i`, followed by years, measures time ("hace 2 años")."""
    if words[i + 1:i + 2] and words[i + 1] not in AGE_UNITS:
        return False
    before = words[i - 1] if i else ""
    if before in HAS_AGE or (before in AGE_OF and words[max(0, i - 2)] not in TIME_OF):
        return False
    if AGE_BEFORE_ONE & set(words[max(0, i - 3):i]):  # "age around ten years, working"
        return False
    return ("hace" in words[max(0, i - 3):i] or before in DURATION_BEFORE
            or words[i + 2:i + 3] and words[i + 2] in DURATION_AFTER)


@lru_cache(maxsize=4096)
def _age(word: str) -> int | None:
    """A number of years as said: "13", "trece", "catorse"."""
    if word.isdigit() and len(word) <= 2:
        return int(word)
    return AGE_WORDS.get(word, AGES_SOUNDING.get(sounds(word)))


@dataclass(frozen=True)
class Choice:
    """One option of a question, as the matcher sees it."""

    key: str
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    priority: bool = False  # heard at all (as a whole word), it wins: a child's safety
    loose: tuple[str, ...] = ()  # keywords said of others too: they do not win alone
    near_danger: bool = False  # its callers are often in danger now: see WHOLE_SIGN_ASK


@dataclass(frozen=True)
class Decision:
    """What to do with what the caller said.

    `action`: "route" (to `key`), "danger" (the emergency path), "ask_danger" (ask
    whether someone is in danger now; `key`, if any, is the line a "no" goes to: the
    child's, or the option clearly understood), "either"
    (ask between `keys`), "none" (not understood). `evidence`: the menu's keywords or
    example phrases that decided it.
    """

    action: str
    key: str | None = None
    keys: tuple[str, ...] = ()
    score: float = 0.0  # the probability behind the decision
    method: str = ""  # "keyword", "signs", "example", "age", "digit", or "" when nothing matched
    evidence: tuple[str, ...] = ()


class Matcher:
    """Understands answers to one question in one language."""

    def __init__(self, lang: str, choices: list[Choice], danger: Danger | None = None,
                 danger_key: str | None = None):
        self.lang = lang
        self.choices = tuple(choices)
        self.danger, self.danger_key = (danger, danger_key) if danger_key else (None, None)
        # Where the options have example phrases and danger is asked about, one model of
        # the whole utterance weighs the options and danger together (see _Whole).
        whole = self.danger is not None and any(c.examples for c in self.choices)
        self._whole = (_whole_model(lang, self.choices, danger.words, danger.examples)
                       if whole else None)
        self.reader, self._options = _trained(lang, self.choices, fit=not self._whole)
        if self.danger is not None and not self._whole:
            self.danger.model  # noqa: B018 - trained now, not at a caller's first answer
        self._near_danger = frozenset(c.key for c in self.choices if c.near_danger)

    def decide(self, text: str) -> Decision:
        words = tokens(text)
        reader = self.reader
        said = reader.heard(words)
        if not said:
            return Decision("none")
        digit = spoken_digit(text)
        if digit:
            return Decision("route", digit, score=1.0, method="digit")
        named = self.danger.named_in(words) if self.danger else None
        if named:  # the answer to the menu's own question: no model weighs it away
            return Decision("danger", self.danger_key, score=1.0, method="keyword",
                            evidence=(named,))
        hits, age, features = reader.read(words, said, weigh=not self._whole)
        if self._whole:  # it weighs danger below
            danger, danger_hits = 0.0, self.danger.heard(words)
        else:
            danger, danger_hits = self.danger.assess(words) if self.danger else (0.0, [])
        if not (age or danger_hits or any(hits.values())) and max(
                reader.nearest.closest(said),
                self.danger.closest(words) if self.danger else 0.0) < EVIDENCE:
            return Decision("none")  # no keyword, and no example shares enough with it
        sure, unsure, margin = DANGER, DANGER_ASK, MARGIN
        if self._whole:
            ranked = self._whole.ranked(words)
            danger = dict(ranked).get(DANGER_OWNER, 0.0)
            unsure, margin = (0.0 if ranked[0][0] == DANGER_OWNER else WHOLE_ASK), WHOLE_MARGIN
            # Any sign, a "not now" one too: the model weighs what it says (counting
            # only signs of danger here found 0.3 points fewer emergencies at once).
            signs = self.danger.any_sign(words)
            if danger_hits:  # a danger word said, and danger possible: no need to ask
                sure = unsure
            elif signs:
                sure = WHOLE_DANGER
            else:  # nothing the menu knows as danger (a word, a sign) was said
                named = self._short_answer(said, hits)
                if named:
                    return self._why("route", named, 1.0, hits[named], said)
                # Ask, never send at once: a phrase of words the examples lack leans to
                # danger, the class with the most examples.
                sure = math.inf
            options = [(k, p) for k, p in ranked if k != DANGER_OWNER]
            rest = sum(p for _, p in options) or 1.0
            ranked = [(k, p / rest) for k, p in options]  # as likely as each other
        else:
            signs = False
            ranked = self._options.ranked(features) if self._options else _by_hits(hits)
        if danger >= sure:
            return self._why("danger", self.danger_key, danger, danger_hits, said, words)
        # A son or daughter named is a child's case unless only a grown-up's age is said
        # ("mi hija de 23"): then the words weigh in the model like any other.
        child = next((c.key for c in self.choices if c.priority and (
            age or (any(k not in c.loose for k in hits[c.key])
                    and adult_age(words) is None))), None)
        # Without the whole-utterance model the danger words weigh in the detector's
        # probability, not as a rule of their own: by cross-validation, "any danger word
        # asks" cost 2 points of accuracy and 3 of false emergencies and found no
        # emergency the probability missed. For a child, a "no" to the question goes
        # straight to the child's line (`key`).
        (best, top), (second, runner) = ranked[0], (ranked[1] if len(ranked) > 1 else ("", 0))
        # A sign of danger heard in the story of a line whose callers are often in
        # danger now (a child taken, migrants held, a worker locked in) asks from a lower
        # probability: the model splits such a story between the line and danger.
        near = signs and danger >= WHOLE_SIGN_ASK and (child or best in self._near_danger)
        if self.danger_key is not None and (danger >= unsure or near):
            asked = self._why("ask_danger", None, danger, danger_hits, said, words)
            clear = best if top >= ROUTE and top - runner >= margin else None
            return replace(asked, key=child or clear)
        if child:  # a child named, as a whole word or an age, wins over any other line
            evidence = hits[child] or [f"{age} años" if self.lang == "es" else f"{age} years"]
            return Decision("route", child, score=1.0,
                            method="keyword" if hits[child] else "age",
                            evidence=tuple(evidence[:3]))
        if top >= ROUTE and top - runner >= margin:
            return self._why("route", best, top, hits[best], said)
        if second and top + runner >= EITHER:
            return Decision("either", keys=(best, second), score=round(top, 2),
                            method="keyword" if hits[best] else "example",
                            evidence=tuple(hits[best][:2] + hits[second][:2]))
        return Decision("none", score=round(top, 2))

    def _short_answer(self, said: list[str], hits: dict[str, list[str]]) -> str | None:
        """The one option a short answer names by its keywords ("we are refugees",
        "Spanish please"): a few words say little to the whole-utterance model but their
        keyword."""
        named = [key for key, keywords in hits.items()
                 if any(k not in self.reader.loose(key) for k in keywords)]
        meaningful = [w for w in said if w not in FILLERS]
        return named[0] if len(named) == 1 and len(meaningful) <= SHORT_ANSWER else None

    def _why(self, action, key, probability, hits, said, words=()) -> Decision:
        """A decision with what decided it: keywords heard, else (for danger) the kinds
        of danger signs heard, else the nearest example."""
        if hits:
            return Decision(action, key, score=round(probability, 2), method="keyword",
                            evidence=tuple(hits[:3]))
        signs = self.danger.signs.heard(words) if action in ("danger", "ask_danger") else {}
        if signs:
            return Decision(action, key, score=round(probability, 2), method="signs",
                            evidence=tuple(f"{kind}: {sign}" for kind, sign in signs.items()))
        nearest = self.reader.nearest.of(key, said) if said and key else ""
        if action in ("danger", "ask_danger") and self.danger:
            nearest = self.danger.reader.nearest.of(DANGER_OWNER, said or [])
        return Decision(action, key, score=round(probability, 2), method="example",
                        evidence=(nearest,) if nearest else ())


def _by_hits(hits) -> list[tuple[str, float]]:
    """Without examples to learn from: the option with the most keywords heard."""
    counts = {k: len(v) for k, v in hits.items()}
    total = sum(counts.values()) or 1
    return sorted(((k, n / total) for k, n in counts.items()), key=lambda kv: -kv[1])


class _Reader:
    """Reads an utterance as features, for one question and language: its stems and
    n-grams, and which options' keywords, danger words and child's age it holds."""

    def __init__(self, lang: str, choices, danger_words, danger_examples):
        """`choices`' keywords and examples, or (for the danger detector) none and the
        danger words and examples."""
        self.lang = lang
        self.choices = choices
        self._phrases = {c.key: [(k, self._phrase(k)) for k in c.keywords] for c in choices}
        self._words = {k: tokens(k) for c in choices for k in c.keywords}
        self._loose = {c.key: frozenset(c.loose) for c in choices}
        self._danger_phrases = [(k, self._phrase(k)) for k in danger_words]
        keyword_stems = {s for phrases in [*self._phrases.values(), self._danger_phrases]
                         for _, phrase in phrases for s in phrase}
        self._prefixes = {k for k in keyword_stems if len(k) >= FUZZY_MIN_LEN - 1}
        self._fuzzy = [k for k in keyword_stems if len(k) >= FUZZY_MIN_LEN]
        self._fuzzy_near: dict[int, list[str]] = {}  # a stem's length -> its candidates
        self._sounds: dict[str, set[str]] = defaultdict(set)  # "sounds like" -> keywords
        for k in keyword_stems:
            if len(sounds(k)) >= FUZZY_MIN_LEN - 1:  # short keys would meet too much
                self._sounds[sounds(k)].add(k)
        self._like: dict[str, tuple[str, ...]] = {}
        self._split: dict[str, tuple[str, ...]] = {}  # a word -> as said ("mihija": mi hija)
        self._starts: dict[str, list] = defaultdict(list)  # first stem -> phrases
        for c in choices:
            for keyword, phrase in self._phrases[c.key]:
                if phrase:
                    self._starts[phrase[0]].append((c.key, c.priority, keyword, phrase))
        for keyword, phrase in self._danger_phrases:
            if phrase:
                self._starts[phrase[0]].append((DANGER_OWNER, False, keyword, phrase))
        self.nearest = _Nearest(lang, [(c.key, e) for c in choices for e in c.examples]
                                + [(DANGER_OWNER, e) for e in danger_examples])
        self.owners = [c.key for c in choices] + ([DANGER_OWNER] if danger_words else [])
        danger_vocab = {stem(w, lang) for t in danger_examples for w in tokens(t)}
        self._vocabulary = keyword_stems | self.nearest.vocabulary | danger_vocab

    def _phrase(self, keyword: str) -> tuple[str, ...]:
        return tuple(stem(w, self.lang) for w in tokens(keyword))

    def read(self, words: list[str], said: list[str], weigh: bool = True):
        """(keywords heard per option or DANGER_OWNER, a child's age, features: None
        unless `weigh`, when the whole-utterance model needs only the first two)."""
        heard = self.keywords_heard(said, self.split(words))
        hits = {owner: heard.get(owner, []) for owner in self.owners}
        age = minor_age(words)
        if not weigh:
            return hits, age, None
        features = _text_features(said)
        for owner, keywords in hits.items():
            sure = [k for k in keywords if k not in self._loose.get(owner, ())]
            if sure:
                features[f"kw:{owner}"] = KEYWORD_WEIGHT * min(len(sure), 3) / 3 + 1
            elif keywords:  # the model learns how far "colegio" or "pelada" alone counts
                features[f"loose:{owner}"] = 1.0
        if age is not None:
            features["age:minor"] = KEYWORD_WEIGHT
        elif adult_age(words) is not None:  # "mi hija de 23": a grown-up's case
            features["age:adult"] = KEYWORD_WEIGHT
        return hits, age, features

    def features(self, text: str) -> dict[str, float]:
        words = tokens(text)
        return self.read(words, self.heard(words))[2]

    def loose(self, key: str) -> frozenset[str]:
        """An option's keywords said of others too ("colegio"): they do not win alone."""
        return self._loose.get(key, frozenset())

    def heard(self, words: list[str]) -> list[str]:
        """The stems of what was said, with the recogniser's glued words split."""
        return [stem(word, self.lang) for word in self.split(words)]

    def split(self, words: list[str]) -> list[str]:
        """The words said, with the recogniser's glued words split ("mihija")."""
        return [part for word in words for part in self._split_word(word)]

    def _split_word(self, word: str) -> tuple[str, ...]:
        parts = self._split.get(word)
        if parts is None:
            parts = (word,)
            for short in GLUED:
                rest = word[len(short):]
                if (word.startswith(short) and len(rest) >= 4
                        and stem(rest, self.lang) in self._vocabulary
                        and stem(word, self.lang) not in self._vocabulary):
                    parts = (short, rest)
                    break
            if len(self._split) > 20000:  # a bound on what odd input can make us keep
                self._split.clear()
            self._split[word] = parts
        return parts

    def _keywords_like(self, said: str) -> tuple[str, ...]:
        """The keyword stems a spoken stem stands for: itself, a keyword it starts with
        ("trabaj" in "trabajador"), or one a recognition error away ("secuestr"). In a
        fixed order, so that every process explains a decision by the same keywords."""
        like = self._like.get(said)
        if like is None:
            shortest = max(FUZZY_MIN_LEN - 1, len(said) - PREFIX_SLACK)
            found = {said[:n] for n in range(shortest, len(said))
                     if said[:n] in self._prefixes}
            found |= self._sounds.get(sounds(said), set())
            if len(said) >= FUZZY_MIN_LEN:
                found |= {k for k, _, _ in process.extract(
                    said, self._fuzzy_within_reach(len(said)), scorer=fuzz.ratio,
                    score_cutoff=FUZZY_RATIO,
                    limit=None)}
            if len(self._like) > 20000:  # a bound on what odd input can make us keep
                self._like.clear()
            like = self._like[said] = (said, *sorted(found - {said}))
        return like

    def _fuzzy_within_reach(self, length: int) -> list[str]:
        """The keyword stems a stem of `length` letters can be FUZZY_RATIO alike: fuzz.ratio
        is 2 x (letters in common) / (both lengths), so a much shorter or longer one never
        is. The same matches, for a fraction of the comparisons (a good part of a new
        word's first hearing)."""
        near = self._fuzzy_near.get(length)
        if near is None:
            near = self._fuzzy_near[length] = [
                k for k in self._fuzzy
                if 200 * min(length, len(k)) >= FUZZY_RATIO * (length + len(k))]
        return near

    def keywords_heard(self, said: list[str], words: list[str]) -> dict[str, list[str]]:
        """Option key (or DANGER_OWNER) -> its keywords, as the menu writes them, heard
        in `said` (the stems of `words`). Phrases are looked up by their first stem; a
        priority option's (a child's) words must be heard whole, in any gender or number
        (not "pelo" for "pelado", nor "bebida" for "bebé"), the others may be a
        recognition error away or split in two."""
        like = [self._keywords_like(w) for w in said]
        heard: dict[str, list[str]] = defaultdict(list)
        for i in range(len(said)):
            for first in like[i]:
                for owner, whole, keyword, phrase in self._starts.get(first, ()):
                    n, keyword_words = len(phrase), self._words.get(keyword, ())
                    if keyword in heard[owner] or i + n > len(said):
                        continue
                    if all(_whole(words[i + j], keyword_words[j]) if whole
                           else (phrase[j] in like[i + j]) for j in range(n)):
                        heard[owner].append(keyword)
        for a, b in zip(said, said[1:], strict=False):  # "en carcelada": split in two
            for first in self._keywords_like(a + b):
                for owner, whole, keyword, phrase in self._starts.get(first, ()):
                    if len(phrase) == 1 and not whole and keyword not in heard[owner]:
                        heard[owner].append(keyword)
        return heard


DANGER_OWNER = "\0danger"  # the danger words' owner, beside the options' keys


def _whole(said: str, written: str) -> bool:
    """A word heard whole: as written, or with another gender or number ("guambrita",
    "guambritos"); not a longer word with the same stem ("pelo" is not "pelado")."""
    return said == written or _uninflected(said) == _uninflected(written)


def _uninflected(word: str) -> str:
    word = word[:-1] if word.endswith("s") else word
    return word[:-1] if word[-1:] in ("a", "e", "o") else word


def _text_features(said: list[str]) -> dict[str, float]:
    """Stems, adjacent pairs and letter n-grams of what was said."""
    features: dict[str, float] = {}
    for word in said:
        features[f"w:{word}"] = 1.0
        padded = f"<{word}>"
        for i in range(max(1, len(padded) - NGRAM + 1)):
            features[f"g:{padded[i:i + NGRAM]}"] = NGRAM_WEIGHT
    for a, b in zip(said, said[1:], strict=False):
        features[f"b:{a}_{b}"] = 1.0
    return features


# --- the regressions ------------------------------------------------------------------


class _Linear:
    """A trained logistic regression, applied in plain Python (a few dozen features
    are present in an utterance; numpy would cost more than it saves)."""

    def __init__(self, classes: list[str], weights: dict[str, list[float]],
                 intercepts: list[float]):
        self.classes, self.weights, self.intercepts = classes, weights, intercepts

    def ranked(self, features: dict[str, float]) -> list[tuple[str, float]]:
        scores = list(self.intercepts)
        for name, value in features.items():
            row = self.weights.get(name)
            if row:
                for i, w in enumerate(row):
                    scores[i] += w * value
        if len(self.classes) == 2 and len(scores) == 1:  # binary: one decision function
            p = 1 / (1 + math.exp(-scores[0]))
            pairs = [(self.classes[1], p), (self.classes[0], 1 - p)]
        else:
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]
            total = sum(exps)
            pairs = [(c, e / total) for c, e in zip(self.classes, exps, strict=True)]
        return sorted(pairs, key=lambda kv: -kv[1])

    def probability(self, features: dict[str, float]) -> float:
        """The probability of the positive class of a binary model."""
        return dict(self.ranked(features)).get("yes", 0.0)


def whole_words(words: list[str]) -> list[str]:
    """The whole-utterance model's word terms, of the folded words (`tokens`): those of
    two letters or more (as scikit-learn's default) and adjacent pairs: "me tienen
    encerrada" -> "me", ..., "me tienen", "tienen encerrada"."""
    words = [w for w in words if len(w) > 1]
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def whole_letters(words: list[str]) -> list[str]:
    """Its letter terms: the 2- to 5-grams of each folded word padded with spaces (as
    scikit-learn's "char_wb"), which survive a recognition error ("ensserrada")."""
    return [term for word in words for term in word_letters(word)]


@lru_cache(maxsize=1 << 16)  # training meets each word many times (a third of its time)
def word_letters(word: str) -> tuple[str, ...]:
    low, high = WHOLE_LETTERS
    padded, terms = f" {word} ", []
    for n in range(low, high + 1):
        terms.extend(padded[i:i + n] for i in range(max(1, len(padded) - n + 1)))
        if len(padded) <= n:  # a short word is counted once, whole
            break
    return tuple(terms)


class _Whole:
    """TF-IDF of whole_words and whole_letters (sublinear counts, each part scaled to
    length 1, as scikit-learn's TfidfVectorizer) into a logistic regression over the
    options and DANGER_OWNER, applied without scikit-learn: an utterance has a few
    hundred letter n-grams, so numpy weighs them, and each word's are looked up once."""

    def __init__(self, classes: list[str], intercepts, words, letters):
        """`words`, `letters`: (term -> row, idf per row, weights: a row per term)."""
        self.classes, self.intercepts = classes, intercepts
        self.words, self.letters = words, letters
        self._letter_rows: dict[str, tuple[int, ...]] = {}

    def ranked(self, words: list[str]) -> list[tuple[str, float]]:
        """The classes, likeliest first, for the folded words said."""
        rows = self.words[0]
        scores = self.intercepts.copy()
        for part, found in ((self.words, [rows[t] for t in whole_words(words) if t in rows]),
                            (self.letters, [r for w in words for r in self._letters_of(w)])):
            if found:
                counts = Counter(found)
                at = np.fromiter(counts, dtype=np.intp, count=len(counts))
                tfidf = (1 + np.log(np.fromiter(counts.values(), dtype=float,
                                                count=len(counts)))) * part[1][at]
                scores += tfidf @ part[2][at] / np.sqrt(tfidf @ tfidf)
        exps = np.exp(scores - scores.max())
        probabilities = (exps / exps.sum()).tolist()
        return sorted(zip(self.classes, probabilities, strict=True), key=lambda kv: -kv[1])

    def _letters_of(self, word: str) -> tuple[int, ...]:
        found = self._letter_rows.get(word)
        if found is None:
            rows = self.letters[0]
            found = tuple(rows[t] for t in word_letters(word) if t in rows)
            if len(self._letter_rows) > 20000:  # a bound on what odd input can make us keep
                self._letter_rows.clear()
            self._letter_rows[word] = found
        return found


@lru_cache(maxsize=16)
@model_cache.kept
def _whole_model(lang: str, choices: tuple[Choice, ...], danger_words: tuple[str, ...],
                 danger_examples: tuple[str, ...]) -> _Whole | None:
    """The whole-utterance model of a question: its options' examples and keywords, and
    the danger examples (and words, a light sample each: said alone they are danger, but
    one word must not outweigh a sentence). Trained by scikit-learn when a menu is built;
    cached by its phrases."""
    from scipy.sparse import hstack  # only when a menu is built
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    # A danger example may also be an option's ("a man took my girl of 12, just now"): it
    # is learnt as danger alone, so an emergency naming a line is not split between them.
    dangerous = set(danger_examples)
    samples = [(t, c.key, 1.0) for c in choices for t in (*c.examples, *c.keywords)
               if t not in dangerous]
    samples += [(t, DANGER_OWNER, 1.0) for t in danger_examples]
    samples += [(t, DANGER_OWNER, WORD_SAMPLE_WEIGHT) for t in danger_words]
    if len({label for _, label, _ in samples}) < 2:
        return None
    said = [tokens(t) for t, _, _ in samples]
    vectorizers = [TfidfVectorizer(analyzer=whole_words, sublinear_tf=True),
                   TfidfVectorizer(analyzer=whole_letters, sublinear_tf=True,
                                   min_df=WHOLE_MIN_PHRASES)]
    x = hstack([v.fit_transform(said) for v in vectorizers]).tocsr()
    # newton-cg: the same optimum as the default solver, a few times faster here.
    model = LogisticRegression(C=WHOLE_REGULARISATION, solver="newton-cg", max_iter=3000)
    model.fit(x, [label for _, label, _ in samples],
              sample_weight=[weight for _, _, weight in samples])
    parts, column = [], 0
    for vectorizer in vectorizers:
        width = len(vectorizer.vocabulary_)
        parts.append((dict(vectorizer.vocabulary_), vectorizer.idf_.copy(),
                      np.ascontiguousarray(model.coef_[:, column:column + width].T)))
        column += width
    return _Whole([str(c) for c in model.classes_], model.intercept_.copy(), *parts)


@lru_cache(maxsize=64)
@model_cache.kept
def _trained(lang: str, choices: tuple[Choice, ...], fit: bool = True):
    """(reader, option model) of a question, trained on its options' examples and
    keywords (unless `fit` is false: the whole-utterance model weighs them); cached by
    them, so building the same menu again costs nothing."""
    reader = _Reader(lang, choices, (), ())
    if not fit:
        return reader, None
    options = _fit([(reader.features(text), c.key, 1.0) for c in choices
                    for text in (*c.examples, *c.keywords)])
    return reader, options


# Words that deny the danger named after them: "no es urgente", "not an emergency", "ya no
# estoy en peligro", "no es que esté en peligro ahorita" (five words before it).
DENIALS = frozenset({"no", "not", "isn't", "nothing", "nada", "ni", "nunca", "never", "sin",
                     "without"})
DENIAL_REACH = 5


class Danger:
    """Is someone in danger now? One detector per language, for every question: trained
    on the danger words and examples against every option's examples and keywords
    (balanced, so the few danger examples weigh as much as all the rest)."""

    def __init__(self, lang: str, words: tuple[str, ...], examples: tuple[str, ...],
                 others: tuple[str, ...], signs: tuple[tuple[str, tuple[str, ...]], ...] = (),
                 named: tuple[str, ...] = (),
                 not_now: tuple[tuple[str, tuple[str, ...]], ...] = ()):
        self.lang, self.words, self.examples = lang, tuple(words), tuple(examples)
        self.others = tuple(others)
        self.named: dict[str, set[tuple[str, ...]]] = defaultdict(set)  # by first word
        for phrase in named:
            heard = tuple(sounds(w) for w in tokens(phrase))
            if heard:
                self.named[heard[0]].add(heard)
        self.reader = _danger_reader(lang, self.words, self.examples)
        # The kinds of sign that say danger, and those that say "not now" ("hace un año",
        # "quiero denunciar"): the detector weighs both; only the first explain a decision.
        self.signs, self._all_signs = _Signs(tuple(signs)), tuple(signs) + tuple(not_now)
        self._weighed = _Signs(self._all_signs)

    @cached_property
    def model(self) -> _Linear | None:
        """The detector, trained when first needed: only a question without examples
        weighs danger by it (`assess`); the whole-utterance model weighs it elsewhere."""
        return _danger_model(self.lang, self.words, self.examples, self.others,
                             self._all_signs)

    def named_in(self, words: list[str]) -> str | None:
        """The menu's own words for danger ("peligro", "emergency", or a phrase of them),
        said and not denied."""
        heard = [sounds(w) for w in words]
        for i, first in enumerate(heard):
            for phrase in self.named.get(first, ()):
                if (tuple(heard[i:i + len(phrase)]) == phrase
                        and not DENIALS.intersection(words[max(0, i - DENIAL_REACH):i])):
                    return " ".join(words[i:i + len(phrase)])
        return None

    def assess(self, words: list[str]) -> tuple[float, list[str]]:
        """(probability, the danger words heard)."""
        said = self.reader.heard(words)
        hits, _, features = self.reader.read(words, said)
        features.update(self._weighed.features(words))
        probability = self.model.probability(features) if self.model else 0.0
        return probability, hits.get(DANGER_OWNER, [])

    def any_sign(self, words: list[str]) -> bool:
        """A sign heard, of danger or of "not now"."""
        return bool(self._weighed.heard(words))

    def heard(self, words: list[str]) -> list[str]:
        """The danger words heard, without the probability: where the whole-utterance
        model weighs danger."""
        said = self.reader.heard(words)
        return self.reader.keywords_heard(said, self.reader.split(words)).get(DANGER_OWNER, [])

    def closest(self, words: list[str]) -> float:
        """The nearest danger example's cosine."""
        return self.reader.nearest.closest(self.reader.heard(words))


class _Signs:
    """Weak signs of danger by kind ("held": "encerr", "no me dejan"...): a sign is heard
    when a word of the utterance begins with it, or the words of a phrase follow one
    another. Word beginnings, not stems: they are cheap and read the recogniser's
    spellings ("ajorcando") as written. One sign decides nothing: the detector learns
    from the examples how much each kind counts."""

    def __init__(self, signs: tuple[tuple[str, tuple[str, ...]], ...]):
        self._kinds = [(kind, tuple(" " + " ".join(tokens(b)) for b in beginnings))
                       for kind, beginnings in signs]

    def heard(self, words: list[str]) -> dict[str, str]:
        """Kind -> the first of its signs heard."""
        said = " " + " ".join(words)
        heard = {}
        for kind, beginnings in self._kinds:
            sign = next((b for b in beginnings if b in said), None)
            if sign:
                heard[kind] = sign.strip()
        return heard

    def features(self, words: list[str]) -> dict[str, float]:
        return {f"sign:{kind}": SIGN_WEIGHT for kind in self.heard(words)}


@lru_cache(maxsize=16)
@model_cache.kept
def _danger_reader(lang, words, examples) -> _Reader:
    return _Reader(lang, (), words, examples)


@lru_cache(maxsize=16)
@model_cache.kept
def _danger_model(lang, words, examples, others, signs) -> _Linear | None:
    reader, kinds = _danger_reader(lang, words, examples), _Signs(signs)

    def features(text: str) -> dict[str, float]:
        return {**reader.features(text), **kinds.features(tokens(text))}

    # The model learns mostly from whole utterances. A danger word said alone ("¡auxilio!")
    # is danger too, but counted as a full sample each word would teach that one word
    # is enough in any sentence: by leave-one-writer-out validation that cost 3 points of
    # recall at 3 % false alarms, against 1 point at a tenth of a sample.
    word_weight = WORD_SAMPLE_WEIGHT if examples else 1.0
    samples = [(features(t), "yes", 1.0) for t in examples]
    samples += [(features(t), "yes", word_weight) for t in words]
    samples += [(features(t), "no", 1.0) for t in others]
    return _fit(samples, balanced=True, c=DANGER_REGULARISATION) if examples or words else None


def _fit(samples: list[tuple[dict[str, float], str, float]], balanced: bool = False,
         c: float = REGULARISATION):
    """A logistic regression over the samples' (features, label, weight); None with
    fewer than 2 labels."""
    if len({label for _, label, _ in samples}) < 2:
        return None
    from sklearn.feature_extraction import DictVectorizer  # only when a menu is built
    from sklearn.linear_model import LogisticRegression

    vectorizer = DictVectorizer()
    x = vectorizer.fit_transform([f for f, _, _ in samples])
    model = LogisticRegression(C=c, max_iter=5000, tol=FIT_TOLERANCE,
                               class_weight="balanced" if balanced else None)
    model.fit(x, [label for _, label, _ in samples],
              sample_weight=[weight for _, _, weight in samples])
    names = vectorizer.get_feature_names_out()
    weights: dict[str, list[float]] = defaultdict(list)
    for row in model.coef_:
        for name, w in zip(names, row, strict=True):
            weights[name].append(float(w))
    return _Linear([str(c) for c in model.classes_], dict(weights),
                   [float(b) for b in model.intercept_])


class _Nearest:
    """TF-IDF over stems of the example phrases: the example nearest to what was said,
    to show an administrator which example decided a match."""

    def __init__(self, lang: str, labelled: list[tuple[str, str]]):
        self.lang = lang
        docs = [(label, text, [stem(w, lang) for w in tokens(text)]) for label, text
                in labelled]
        frequency: dict[str, int] = defaultdict(int)
        for _, _, words in docs:
            for w in set(words):
                frequency[w] += 1
        n = max(1, len(docs))
        self.idf = {w: math.log((1 + n) / (1 + f)) + 1 for w, f in frequency.items()}
        self.vocabulary = set(self.idf)
        self.docs = [(label, text, self._vector(words)) for label, text, words in docs]
        self.index: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for i, (_, _, vector) in enumerate(self.docs):
            for term, weight in vector.items():
                self.index[term].append((i, weight))

    def _vector(self, words: list[str]) -> dict[str, float]:
        v: dict[str, float] = defaultdict(float)
        for w in words:
            v[w] += self.idf.get(w, 0.0)
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    def closest(self, said: list[str]) -> float:
        """The cosine similarity of the example nearest to `said`, of any label, counting
        only words that carry meaning ("mmm bueno pues" shares nothing with anyone)."""
        sims = self._similarities(self._vector([w for w in said if w not in FILLERS]))
        return max(sims.values(), default=0.0)

    def of(self, label: str, said: list[str]) -> str:
        """The example of `label` nearest to `said` ("" if none shares a word), by the
        words that carry meaning (the fillers' postings are most of the index's)."""
        sims = self._similarities(self._vector([w for w in said if w not in FILLERS] or said))
        best = max((i for i in sims if self.docs[i][0] == label), key=sims.get, default=None)
        return self.docs[best][1] if best is not None else ""

    def _similarities(self, query: dict[str, float]) -> dict[int, float]:
        sims: dict[int, float] = defaultdict(float)
        for term, weight in query.items():
            for i, doc_weight in self.index.get(term, ()):
                sims[i] += weight * doc_weight
        return sims


def best_match(text: str, candidates: list[tuple[str, tuple[str, ...]]],
               lang: str = "es") -> str | None:
    """The key of the candidate whose keywords cover the most spoken words (whole words,
    after stemming, a word counted once however many keywords match it); None if none
    matched. `candidates` is (key, words) in priority order: on a tie the earlier wins."""
    said = [stem(w, lang) for w in tokens(text)]
    best_key, best_score = None, 0
    for key, words in candidates:
        covered: set[int] = set()
        for word in words:
            phrase = [stem(w, lang) for w in tokens(word)]
            n = len(phrase)
            for i in range(len(said) - n + 1 if n else 0):
                if said[i:i + n] == phrase:
                    covered.update(range(i, i + n))
        if len(covered) > best_score:
            best_key, best_score = key, len(covered)
    return best_key
