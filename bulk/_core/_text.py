"""Server text made safe to print: the one helper every string from the server passes through.

A server (or anything between it and us) controls the bytes of its answers.
Printed raw, `ESC ] 0 ; ... BEL` retitles the user's terminal, `ESC [ 2 J`
clears it, and a bidi override (U+202E) makes a report cell read backwards.
So every server string is cleaned where it enters bulk (the client, the error
classifier, the listing), before it can reach a terminal, log, report or file.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TEXT", "clean_text"]

# Long enough for any real API message, short enough for one report cell.
MAX_TEXT = 500

# C0 controls, DEL, C1 controls (8-bit CSI is U+009B), the bidi embeddings,
# overrides and isolates (U+202A-U+202E, U+2066-U+2069), the invisible bidi
# marks (U+061C, U+200E, U+200F) and the Unicode line and paragraph
# separators, which some terminals and editors treat as new lines.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]+"
)
_SPACES = re.compile(r"\s+")


def clean_text(value: object, limit: int = MAX_TEXT) -> str:
    """`value` as one printable line: controls and bidi marks become one space, at most `limit`."""
    text = value if isinstance(value, str) else str(value)
    # isprintable() is False for every character _UNSAFE matches (categories
    # Cc, Cf, Zl, Zp) and for tabs and new lines: clean text costs one C scan.
    if len(text) <= limit and text.isprintable():
        return text
    # Cut before cleaning too, so a megabyte of text costs no more than a line.
    text = _UNSAFE.sub(" ", text[: limit * 2])
    text = _SPACES.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text
