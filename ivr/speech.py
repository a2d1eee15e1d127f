"""Forgiving matching of what a caller said against the words of each menu option.

Callers do not say "option one": they say "mi hija de doce años" or "soy venezolano".
We fold case and accents, drop plural and gender endings, let a long keyword match the
start of a longer word ("trabaj" in "trabajaba"), and count matches per option. Pure
functions, no Twilio, no Flask.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

NUMBER_WORDS = {
    "cero": "0", "uno": "1", "una": "1", "dos": "2", "tres": "3", "cuatro": "4",
    "cinco": "5", "seis": "6", "siete": "7", "ocho": "8", "nueve": "9",
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
# Words that may surround a spoken digit ("marco el dos", "press one", "number 3").
DIGIT_FILLERS = {
    "marco", "marcar", "marque", "el", "la", "numero", "opcion", "press", "number",
    "option", "the", "i", "choose", "quiero", "por", "favor", "please", "es", "is", "it",
}
PREFIX_MIN = 4  # a keyword stem this long also matches words that start with it


def tokens(text: str) -> list[str]:
    """Lower-case words without accents or punctuation: "¿Niña?" -> ["nina"]."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return re.findall(r"[a-z0-9']+", folded)


def stem(word: str) -> str:
    """Drop plural and gender endings: ninos/ninas/nino -> nin, menores -> menor."""
    if len(word) > 4 and word.endswith("es") and word[-3] not in "aeiou":
        word = word[:-2]  # menores -> menor, but refugees -> refugee
    elif len(word) > 3 and word.endswith("s"):
        word = word[:-1]
    if len(word) > 3 and word[-1] in "aoe":
        word = word[:-1]
    return word


@lru_cache(maxsize=4096)
def _phrase(keyword: str) -> tuple[str, ...]:
    return tuple(stem(t) for t in tokens(keyword))


def _same(said: str, keyword: str, prefix: bool = True) -> bool:
    return said == keyword or (prefix and len(keyword) >= PREFIX_MIN
                               and said.startswith(keyword))


def _matched_words(said: list[str], phrase: tuple[str, ...], prefix: bool) -> set[int]:
    """Positions of the spoken words that `phrase` matches (all its occurrences)."""
    n, hits = len(phrase), set()
    for i in range(len(said) - n + 1 if n else 0):
        if all(_same(said[i + j], phrase[j], prefix) for j in range(n)):
            hits.update(range(i, i + n))
    return hits


def spoken_digit(text: str) -> str | None:
    """The key a short answer names: "1", "dos", "marco el tres", "press one"."""
    words = tokens(text)
    digits = [NUMBER_WORDS.get(w, w) for w in words if w not in DIGIT_FILLERS]
    if len(digits) == 1 and re.fullmatch(r"\d", digits[0]):
        return digits[0]
    return None


def best_match(text: str, candidates: list[tuple[str, tuple[str, ...]]],
               prefix: bool = True) -> str | None:
    """The key of the candidate that matches the most spoken words; None if none matched.

    A spoken word counts once however many keywords it matches ("trabajar" is both
    "trabajo" and "trabajar"). `candidates` is (key, words) in priority order: on a tie
    the earlier one wins. `prefix=False` matches whole words only (no "chamo" in
    "chamba", no "girl" in "girlfriend").
    """
    said = [stem(w) for w in tokens(text)]
    best_key, best_score = None, 0
    for key, words in candidates:
        covered: set[int] = set()
        for word in words:
            covered |= _matched_words(said, _phrase(word), prefix)
        if len(covered) > best_score:
            best_key, best_score = key, len(covered)
    return best_key
