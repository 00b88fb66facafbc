"""Untrusted text made safe to show: the one owner of that rule, for both kinds of text.

A server (or anything between it and us) controls the bytes of its answers,
and a user's file the bytes of its cells. Printed raw, `ESC ] 0 ; ... BEL`
retitles the user's terminal, `ESC [ 2 J` clears it, and a bidi override
(U+202E) makes a report cell read backwards.

Two policies, because the two kinds of text are read for different things:

- Server text (`clean_text`) is prose read by a person: controls and bidi
  marks become a space, invisible characters (zero-width, soft hyphen) are
  dropped, a credential of this process's is redacted, and it is cut with an
  ellipsis. Every server string
  is cleaned where it enters bulk (the client, the error classifier, the
  listing), before it can reach a terminal, log, report or file.
- Input cells and names (`cut_text`, `printable`) are data the user must find
  again in their own file: non-printable characters are shown escaped
  (`\\x1b`), never dropped, and a long cell says how much was cut
  (`…(+N chars)`). These stay as the README documents them.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = [
    "KEEP",
    "MAX_TEXT",
    "REDACTED",
    "LongText",
    "clean_text",
    "cut_text",
    "hide_secrets",
    "printable",
]

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
# Characters that show as nothing (zero-width space and joiners, word joiner, BOM, soft
# hyphen): dropped, so none can hide inside a word, a credential above all.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200d\u2060\ufeff]+")


# The credentials this process holds, registered where they are made (and as OAuth renews
# them): a server or proxy that echoes a request's headers in its error text (a WAF's page,
# a gateway's "upstream rejected Basic ...") must not carry them into a report, log, page or
# journal. Each is hidden as sent, without its base64 padding and URL-encoded; and whatever
# follows "Basic " or "Bearer " is hidden too, even cut short or not ours. Tuples replaced
# whole, never changed in place: read without a lock from any thread.
REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter strings would hide innocent text, and guess in a few tries anyway
_KEPT_ROTATING = 8  # of each kind of OAuth token: a token endpoint may renew every request
# A credential's shape after the scheme: 16 or more token characters, a digit or a base64
# sign among them ("basic cleaning services" in a ticket's text is left as it is).
_AUTHORIZATION = re.compile(
    r"(?i)\b(basic|bearer)(\s+)(?=[A-Za-z0-9._~+/%=-]*[0-9+/=%])[A-Za-z0-9._~+/%=-]{16,}"
)
_fixed: tuple[str, ...] = ()
_rotating: dict[str, tuple[str, ...]] = {}
_secrets: tuple[str, ...] = ()


def hide_secrets(*values: str, rotating: str | None = None) -> None:
    """Never show these in server text again (`clean_text` puts REDACTED in their place).

    `rotating`: a kind of token renewed as the run goes (OAuth's access and refresh tokens),
    of which the latest few are kept.
    """
    global _fixed, _secrets
    new = tuple(v for v in dict.fromkeys(values) if len(v) >= _MIN_SECRET)
    if rotating:
        _rotating[rotating] = (*_rotating.get(rotating, ()), *new)[-_KEPT_ROTATING:]
    else:
        _fixed = (*_fixed, *(v for v in new if v not in _fixed))
    kept = (*_fixed, *(v for held in _rotating.values() for v in held))
    forms = {f for v in kept for f in (v, v.rstrip("="), urllib.parse.quote(v, safe=""))}
    # Longest first: "id:secret" goes before its "secret" is found inside it.
    _secrets = tuple(sorted((f for f in forms if len(f) >= _MIN_SECRET), key=len, reverse=True))


# Its cost, measured: a 36-character cell took 0.45 us to clean, 1.4 us with Basic
# credentials held (6 us when it holds the word "basic"); a job's listing at the documented
# pace brings about a thousand cells a second, so a few milliseconds a second at most.
def _redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    lowered = text.lower()
    if "basic" in lowered or "bearer" in lowered:
        text = _AUTHORIZATION.sub(rf"\1\2{REDACTED}", text)
    return text


def clean_text(value: object, limit: int = MAX_TEXT) -> str:
    """`value` as one printable line: controls and bidi marks become one space, at most `limit`;
    a credential of this process's (`hide_secrets`) becomes REDACTED, before it could be cut."""
    text = _redact(value if isinstance(value, str) else str(value))
    # isprintable() is False for every character _UNSAFE matches (categories
    # Cc, Cf, Zl, Zp) and for tabs and new lines: clean text costs one C scan.
    if len(text) <= limit and text.isprintable():
        return text
    # Cut before cleaning too, so a megabyte of text costs no more than a line.
    text = _UNSAFE.sub(" ", _INVISIBLE.sub("", text[: limit * 2]))
    text = _redact(_SPACES.sub(" ", text).strip())  # a secret that controls had hidden
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


# Characters kept of an input cell; no ticket id or status comes close, so a
# longer cell is invalid anyway and is kept only to be recognised in the report.
KEEP = 256


class LongText(str):
    """A cell cut to its first KEEP characters, with a mark of how many more it had."""

    size: int  # the whole (trimmed) cell's length


def _escape(char: str) -> str:
    if char.isspace():
        return " "  # a tab or line break inside a cell: a plain space
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def cut_text(text: str, size: int | None = None, keep: int = KEEP) -> str:
    """`text` trimmed, non-printable characters escaped, cut to `keep` characters.

    `size`: the whole cell's length when `text` holds only its start (a reader
    that streams, such as the .xlsx one, never builds the rest).
    """
    text = text.strip()
    whole = len(text) if size is None else size
    if whole <= keep and text.isprintable():
        return text
    shown = "".join(c if c.isprintable() else _escape(c) for c in text[:keep])
    if whole <= keep:
        return shown
    cut = LongText(f"{shown}…(+{whole - keep:,} chars)")
    cut.size = whole
    return cut


def printable(text: object, keep: int = 60) -> str:
    """Untrusted text (a column name, a file name) made safe for one line of a message."""
    return cut_text(str(text), keep=keep)
