"""The sentiment we sell: right on obvious sentences, and exactly VADER's numbers, only faster."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES, SentimentIntensityAnalyzer

from metering.products.sentiment import LinearSentimentAnalyzer
from metering.products.text import text_analyze

# Obvious cases a customer would try first, by kind. Each is what a human reader says it is.
LABELLED = [
    # positive
    ("I love this product, it works perfectly.", "positive"),
    ("The support team was friendly and helpful.", "positive"),
    ("What a wonderful surprise, thank you so much.", "positive"),
    ("Great value for the price.", "positive"),
    ("The new dashboard is beautiful and easy to use.", "positive"),
    ("I'm happy with the results.", "positive"),
    # negative
    ("This is the worst service I have ever used.", "negative"),
    ("The app keeps crashing and I hate it.", "negative"),
    ("Terrible experience, the package arrived broken.", "negative"),
    ("I'm disappointed and angry about the delay.", "negative"),
    ("The food was awful and the staff were rude.", "negative"),
    ("Sadly the update made everything worse.", "negative"),
    # neutral
    ("The meeting is at 3 pm on Tuesday.", "neutral"),
    ("The invoice number is 2024-0042.", "neutral"),
    ("Paris is the capital of France.", "neutral"),
    ("The package weighs two kilograms.", "neutral"),
    ("Our office moved to the third floor.", "neutral"),
    ("Please send the report by Friday.", "neutral"),
    # negation
    ("This is not good at all.", "negative"),
    ("I don't like the new design.", "negative"),
    ("The hotel was not bad.", "positive"),
    ("It isn't terrible, actually.", "positive"),
    ("I would never recommend this to anyone.", "negative"),
    ("Nothing about it was enjoyable.", "negative"),
    # emphasis: capitals, boosters, exclamation marks, "but"
    ("This is AMAZING!!!", "positive"),
    ("The service was VERY bad!!!", "negative"),
    ("Absolutely fantastic work!", "positive"),
    ("The movie was extremely boring.", "negative"),
    ("The plot was slow, but the ending was brilliant.", "positive"),
    ("The screen is nice, but the battery is horrible.", "negative"),
    # emoji
    ("Just got my order 😍", "positive"),
    ("Best day ever 😀🎉", "positive"),
    ("My flight got cancelled 😢", "negative"),
    ("Stuck in traffic again 😡", "negative"),
    ("Thanks for the quick fix 👍", "positive"),
    ("Lost my keys 😞", "negative"),
]


def test_there_are_at_least_thirty_labelled_sentences_of_every_kind():
    assert len(LABELLED) >= 30
    assert {label for _, label in LABELLED} == {"positive", "negative", "neutral"}


def test_the_sold_labels_are_right_on_at_least_ninety_percent_of_obvious_sentences():
    wrong = [
        (text, expected, got["label"], got["score"])
        for text, expected in LABELLED
        if (got := text_analyze(text=text)["sentiment"])["label"] != expected
    ]
    accuracy = 1 - len(wrong) / len(LABELLED)
    print(f"\nsentiment accuracy: {accuracy:.1%} ({len(LABELLED) - len(wrong)}/{len(LABELLED)}); wrong: {wrong}")
    assert accuracy >= 0.90, wrong


@pytest.mark.parametrize("text", [text for text, _ in LABELLED])
def test_the_label_follows_the_documented_score_thresholds(text):
    sentiment = text_analyze(text=text)["sentiment"]
    score = sentiment["score"]
    expected = "positive" if score >= 0.05 else "negative" if score <= -0.05 else "neutral"
    assert sentiment["label"] == expected


def test_the_response_puts_the_verdict_first_and_keeps_proportions_apart():
    sentiment = text_analyze(text="The food was awful and the staff were rude.")["sentiment"]
    assert list(sentiment)[:2] == ["label", "score"]
    assert sentiment["label"] == "negative" and -1 <= sentiment["score"] < 0
    assert sentiment["compound"] == sentiment["score"]
    assert all(0 <= sentiment[key] <= 1 for key in ("pos", "neu", "neg"))
    assert sentiment["pos"] + sentiment["neu"] + sentiment["neg"] == pytest.approx(1, abs=0.002)


# ------------------------------------------------------------------------------------------
# Exactly VADER: the linear-time analyzer must return VADER's own numbers for every text.
# ------------------------------------------------------------------------------------------

_vader = SentimentIntensityAnalyzer()
_linear = LinearSentimentAnalyzer()

# VADER's own demo sentences: negation, caps, boosters, "but", "least", idioms, emoji.
VADER_EXAMPLES = [
    "VADER is smart, handsome, and funny.", "VADER is VERY SMART, uber handsome, and FRIGGIN FUNNY!!!",
    "VADER is not smart, handsome, nor funny.", "At least it isn't a horrible book.",
    "The book was only kind of good.",
    "The plot was good, but the characters are uncompelling and the dialog is not great.",
    "Today only kinda sux! But I'll get by, lol", "Make sure you :) or :D today!",
    "Catch utf-8 emoji such as 💘 and 💋 and 😁", "Not bad at all", "Sentiment analysis has never been this good!",
    "With VADER, sentiment analysis is the shit!", "On the other hand, VADER is quite bad ass",
    "Without a doubt, excellent idea.", "Roger Dodger is one of the least compelling variations on this theme.",
    "It was good but good but bad but good", "no no no good", "never so good, never this bad",
]

# Tokens that trigger each of VADER's rules, plus some plain lexicon words and filler.
_TOKENS = [
    "but", "BUT", "kind", "of", "no", "never", "so", "this", "without", "doubt", "least", "at", "very",
    "good", "GOOD", "bad", "BAD", "great", "love", "hate", "ok", "the", "x", "!", "!!", "?", "??", "???",
    ":)", ":(", "😀", "😢", "💔", "😂", "good,", "(bad)", "shit", "bomb", "ass", "death", "die", "for",
    *NEGATE, *BOOSTER_DICT, *SPECIAL_CASES,
]


@pytest.mark.parametrize("text", VADER_EXAMPLES + [text for text, _ in LABELLED])
def test_known_sentences_score_exactly_as_vader_does(text):
    assert _linear.polarity_scores(text) == _vader.polarity_scores(text)
    assert text_analyze(text=text)["sentiment"]["score"] == _vader.polarity_scores(text)["compound"]


@settings(max_examples=400, deadline=None)
@given(
    words=st.lists(st.sampled_from(_TOKENS), max_size=40),
    upper=st.booleans(),
    joiner=st.sampled_from([" ", "", ", ", "! "]),
)
def test_any_short_text_scores_exactly_as_vader_does(words, upper, joiner):
    text = joiner.join(word.upper() if upper else word for word in words)
    assert _linear.polarity_scores(text) == _vader.polarity_scores(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_scores_exactly_as_vader_does(text):
    assert _linear.polarity_scores(text) == _vader.polarity_scores(text)
