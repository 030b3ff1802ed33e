"""Cleaning free text that ends up in one-line places: email subjects, headers, lists."""
from __future__ import annotations

import unicodedata

# Control characters and the Unicode line/paragraph separators: any of them can end a header line.
_BREAKING = {"Cc", "Zl", "Zp"}


def single_line(value: str) -> str:
    """`value` on one line: line breaks and control characters become spaces, runs collapse."""
    spaced = "".join(" " if unicodedata.category(ch) in _BREAKING else ch for ch in str(value))
    return " ".join(spaced.split())
