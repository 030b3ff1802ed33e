"""VADER's scores in linear time.

``vaderSentiment`` 3.3 rebuilds the lowercased token list of the whole text
for every lexicon word it scores (``_negation_check``,
``_special_idioms_check``) and finds each score's position with
``list.index`` in ``_but_check``, so one text costs O(n²): 12,000 emoji (each
expanded into a few words) took about 30 s. :class:`LinearSentimentAnalyzer`
keeps VADER's rules and arithmetic exactly, and only changes how they are
computed: the lowercase tokens are built once per text and carried with the
token list, and the "but" rule is replayed with a position index per value.
``metering/tests/test_sentiment_accuracy.py`` checks that it returns exactly
what VADER returns.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    NEGATE,
    N_SCALAR,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    SentiText,
)

_NEGATE = frozenset(NEGATE)


class _Tokens(list):
    """VADER's token list, carrying its lowercase twin so no rule rebuilds it."""

    __slots__ = ("lower",)

    def __init__(self, tokens: Iterable[str]) -> None:
        super().__init__(tokens)
        self.lower = [str(token).lower() for token in self]


def _negated(word_lower: str) -> bool:
    # vaderSentiment.negated() for one word, without copying NEGATE per call.
    return word_lower in _NEGATE or "n't" in word_lower


class LinearSentimentAnalyzer(SentimentIntensityAnalyzer):
    """SentimentIntensityAnalyzer with the same scores and no quadratic step."""

    def polarity_scores(self, text: str) -> dict[str, float]:
        text = self._emoji_to_words(text)
        sentitext = SentiText(text)
        words = _Tokens(sentitext.words_and_emoticons)
        sentitext.words_and_emoticons = words
        sentiments: list[Any] = []
        last = len(words) - 1
        for i, item in enumerate(words):
            lower = words.lower[i]
            # Boosters and "kind of" modify their neighbours; they score 0 themselves.
            if lower in BOOSTER_DICT or (i < last and lower == "kind" and words.lower[i + 1] == "of"):
                sentiments.append(0)
                continue
            sentiments = self.sentiment_valence(0, sentitext, item, i, sentiments)
        sentiments = self._but_check(words, sentiments)
        return self.score_valence(sentiments, text)

    def _emoji_to_words(self, text: str) -> str:
        # VADER's loop, but joining parts instead of growing one string.
        parts: list[str] = []
        prev_space = True
        for char in text:
            description = self.emojis.get(char)
            if description is None:
                parts.append(char)
                prev_space = char == " "
                continue
            if not prev_space:
                parts.append(" ")
            parts.append(description)
            prev_space = False
        return "".join(parts).strip()

    @staticmethod
    def _negation_check(valence: float, words_and_emoticons: _Tokens, start_i: int, i: int) -> float:
        lower = words_and_emoticons.lower
        if start_i == 0:
            if _negated(lower[i - 1]):
                valence = valence * N_SCALAR
        if start_i == 1:
            if lower[i - 2] == "never" and lower[i - 1] in ("so", "this"):
                valence = valence * 1.25
            elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
                pass
            elif _negated(lower[i - 2]):
                valence = valence * N_SCALAR
        if start_i == 2:
            # Operator precedence kept from VADER: (never and so/this) or so/this.
            if (lower[i - 3] == "never" and lower[i - 2] in ("so", "this")) or lower[i - 1] in ("so", "this"):
                valence = valence * 1.25
            elif lower[i - 3] == "without" and (lower[i - 2] == "doubt" or lower[i - 1] == "doubt"):
                pass
            elif _negated(lower[i - 3]):
                valence = valence * N_SCALAR
        return valence

    @staticmethod
    def _special_idioms_check(valence: float, words_and_emoticons: _Tokens, i: int) -> float:
        lower = words_and_emoticons.lower
        onezero = f"{lower[i - 1]} {lower[i]}"
        twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
        twoone = f"{lower[i - 2]} {lower[i - 1]}"
        threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
        threetwo = f"{lower[i - 3]} {lower[i - 2]}"
        for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
            if seq in SPECIAL_CASES:
                valence = SPECIAL_CASES[seq]
                break
        if len(lower) - 1 > i:
            zeroone = f"{lower[i]} {lower[i + 1]}"
            if zeroone in SPECIAL_CASES:
                valence = SPECIAL_CASES[zeroone]
        if len(lower) - 1 > i + 1:
            zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
            if zeroonetwo in SPECIAL_CASES:
                valence = SPECIAL_CASES[zeroonetwo]
        for n_gram in (threetwoone, threetwo, twoone):
            if n_gram in BOOSTER_DICT:
                valence = valence + BOOSTER_DICT[n_gram]
        return valence

    @staticmethod
    def _but_check(words_and_emoticons: _Tokens, sentiments: list[Any]) -> list[Any]:
        """VADER's "but" rule, including its quirk, in O(n log n).

        VADER halves each score before the first "but" and raises each after it
        by half, but finds "each score" with ``sentiments.index(value)``: the
        first position currently holding an equal value, which for repeated
        values is an earlier one. Replaying that needs the smallest position
        per value, kept in a heap per value (stale entries dropped lazily).
        """
        lower = words_and_emoticons.lower
        if "but" not in lower:
            return sentiments
        bi = lower.index("but")
        heaps: dict[Any, list[int]] = {}
        for position, value in enumerate(sentiments):
            heaps.setdefault(value, []).append(position)  # ascending: already a heap
        for k in range(len(sentiments)):
            value = sentiments[k]
            heap = heaps[value]
            while sentiments[heap[0]] != value:
                heapq.heappop(heap)
            si = heap[0]
            if si == bi:
                continue
            new = value * 0.5 if si < bi else value * 1.5
            sentiments[si] = new
            if new != value:
                heapq.heappop(heap)
                heapq.heappush(heaps.setdefault(new, []), si)
        return sentiments
