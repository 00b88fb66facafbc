"""A row as a set of changes: assignee, type, comment and status, each checked before sending.

The order of sending is fixed (`KINDS`): assignee, type, comment, then status
last, so a comment lands on a ticket that is still open. `delete_comment`
exists only in undo batches (an added comment taken back).

A comment may be a template (`"Closed after the move to {new_system}"`)
filled from the row's own columns. Templates are parsed once with
`string.Formatter` and filled by joining text, never with `str.format`: a
placeholder names a column and nothing else (no `{x.attr}`, `{x[0]}`, no
format spec), so an input cannot reach Python attributes.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from typing import NamedTuple

from .._core._exceptions import UsageError
from .._core._ids import UUID_PATTERN
from .._core._text import KEEP, LongText
from ..input import Chunk
from ._checks import PlannedRow, plan_chunk

__all__ = [
    "CHANGE_COLUMNS",
    "KINDS",
    "TYPES",
    "ChangeSpec",
    "PlannedChange",
    "Template",
    "checked_assignee",
    "checked_changes",
    "checked_type",
    "plan_changes",
]

# The order of sending; the position is the change's `seq` in the journal.
KINDS = ("assignee", "type", "comment", "delete_comment", "status")
# The input columns that carry a change (besides the status column).
CHANGE_COLUMNS = ("assignee", "type", "comment", "delete_comment")
# The spec's `ticket.type` enum (spec/spacebring-openapi-support.json).
TYPES = (
    "access",
    "accountAndBilling",
    "bookings",
    "cleaning",
    "discriminationAndHarassment",
    "internet",
    "mailAndPackages",
    "noiseAndAcoustics",
    "offensiveOrObjectionableContent",
    "other",
    "printing",
    "repairAndMaintenance",
    "temperatureAndVentilation",
    "websiteAndApp",
)
_TYPE_ALIASES = {t.lower(): t for t in TYPES}
_SEPARATORS = re.compile(r"[\s_\-]+")
UNASSIGN = "none"
# The API gives no limit; this keeps a runaway template out of a customer's inbox.
MAX_COMMENT = 10_000


class PlannedChange(NamedTuple):
    """One change of one row, in the order of the journal's INSERT."""

    row: int
    seq: int  # position in KINDS: the order of sending
    kind: str
    value: str


class Template(NamedTuple):
    """A comment: literal text and column names, alternating (parsed once)."""

    parts: tuple[tuple[str, str | None], ...]  # (literal, column or None)

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse `--comment`; a bad template is a usage error (exit 2)."""
        parts = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise UsageError(
                f"--comment: not a valid template ({exc}); write {{{{ and }}}} for braces"
            ) from None
        for literal, field, spec, conversion in parsed:
            if field is not None and (
                not field.strip() or spec or conversion or any(c in field for c in ".[]")
            ):
                raise UsageError(
                    f"--comment: {{{field}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} is not a column name; a placeholder is "
                    "{column} (write {{ and }} for braces)"
                )
            parts.append((literal, field.strip() if field is not None else None))
        if not "".join(p[0] for p in parts).strip() and not any(p[1] for p in parts):
            raise UsageError("--comment: empty")
        return cls(tuple(parts))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for _, c in self.parts if c))

    def fill(self, values: dict[str, str]) -> str:
        return "".join(literal + (values[c] if c else "") for literal, c in self.parts)


class ChangeSpec(NamedTuple):
    """What a batch changes besides status: fixed values (options) and the columns present."""

    assignee: str | None = None  # checked: a lower-case UUID or "none"
    type: str | None = None  # checked: a spec type
    comment: Template | None = None
    columns: dict[str, str] = {}  # noqa: RUF012 (a NamedTuple default, never mutated) change/template name -> input column
    # Whether the input's change columns (assignee, type, comment, ...) carry changes: not
    # when --status, --assignee or --type gives every row's (bulk/batch/_changes.py says why);
    # a comment template still reads its own columns.
    from_columns: bool = True

    @property
    def kinds(self) -> list[str]:
        """The kinds of change besides status asked for, in the order they are sent."""
        fixed = {"assignee": self.assignee, "type": self.type, "comment": self.comment}
        return [
            kind
            for kind in ("assignee", "type", "comment")
            if fixed[kind] is not None or (self.from_columns and kind in self.columns)
        ]

    @property
    def any(self) -> bool:
        fixed = (self.assignee, self.type, self.comment)
        return any(v is not None for v in fixed) or (
            self.from_columns and any(c in self.columns for c in CHANGE_COLUMNS)
        )


def checked_assignee(value: str) -> str | None:
    """A user UUID (lower-cased) or `none`; None when it is neither."""
    text = value.strip().lower()
    if text == UNASSIGN or UUID_PATTERN.fullmatch(text):
        return text
    return None


def checked_type(value: str) -> str | None:
    return _TYPE_ALIASES.get(_SEPARATORS.sub("", value).lower())


def checked_changes(
    assignee: str | None, kind: str | None, comment: str | None
) -> tuple[str | None, str | None]:
    """The assignee and type normalised; a bad value or template is a usage error (exit 2)."""
    if assignee is not None:
        checked = checked_assignee(assignee)
        if checked is None:
            raise UsageError(f"--assignee {assignee!r}: not a user id (a UUID) or 'none'")
        assignee = checked
    if kind is not None:
        found = checked_type(kind)
        if found is None:
            raise UsageError(f"--type {kind!r}: not a ticket type; allowed: {', '.join(TYPES)}")
        kind = found
    if comment is not None:
        Template.parse(comment)
    return assignee, kind


def _quote(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _cell(chunk: Chunk, column: str | None, offset: int) -> str | None:
    """The row's cell in `column`; None when the input has no such column."""
    if column is None or chunk.extras is None or column not in chunk.extras:
        return None
    return chunk.extras[column][offset]


def _assignee(raw: str, where: str) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    value = checked_assignee(raw)
    if value is None or isinstance(raw, LongText):
        return None, f"{where}: {_quote(raw)} is not a user id (a UUID) or 'none'"
    return value, None


def _type(raw: str, where: str) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    value = checked_type(raw)
    if value is None or isinstance(raw, LongText):
        return None, f"{where}: {_quote(raw)} is not a ticket type; allowed: {', '.join(TYPES)}"
    return value, None


def _comment(spec: ChangeSpec, chunk: Chunk, offset: int) -> tuple[str | None, str | None]:
    template = spec.comment
    if template is None:
        if not spec.from_columns:
            return None, None
        raw = _cell(chunk, spec.columns.get("comment"), offset) or ""
        if isinstance(raw, LongText):
            return None, f"comment: too long ({raw.size:,} characters; at most {KEEP} from a cell)"
        return (raw or None), None
    values = {}
    for name in template.columns:
        cell = _cell(chunk, spec.columns.get(name), offset)
        if cell is None:
            return None, f"--comment: the input has no column {_quote(name)}"
        if not cell:
            return None, f"--comment: {name}: empty"
        if isinstance(cell, LongText):
            return None, f"--comment: {name}: too long ({cell.size:,} characters)"
        values[name] = cell
    text = template.fill(values).strip()
    if len(text) > MAX_COMMENT:
        return (
            None,
            f"--comment: the filled text is {len(text):,} characters (at most {MAX_COMMENT:,})",
        )
    return text or None, None


def _delete_comment(raw: str) -> tuple[str | None, str | None]:
    if not raw:
        return None, None
    key = raw.strip().lower()
    if not UUID_PATTERN.fullmatch(key):
        return None, f"delete_comment: {_quote(raw)} is not an activity id (a UUID)"
    return key, None


def _row_changes(
    planned: PlannedRow, spec: ChangeSpec, chunk: Chunk, offset: int
) -> tuple[list[PlannedChange], str | None]:
    """The row's changes in sending order, or the first reason it is invalid."""
    cols = spec.columns

    def cell(kind: str) -> str:
        return (_cell(chunk, cols.get(kind), offset) or "") if spec.from_columns else ""

    found: dict[str, str | None] = {"status": planned.target_status or None}
    checks: tuple[tuple[str, str | None, Callable[[], tuple[str | None, str | None]]], ...] = (
        ("assignee", spec.assignee, lambda: _assignee(cell("assignee"), "assignee")),
        ("type", spec.type, lambda: _type(cell("type"), "type")),
        ("comment", None, lambda: _comment(spec, chunk, offset)),
        ("delete_comment", None, lambda: _delete_comment(cell("delete_comment"))),
    )
    for kind, fixed, check in checks:
        value, error = (fixed, None) if fixed is not None else check()
        if error:
            return [], error
        found[kind] = value
    changes = [
        PlannedChange(planned.row, seq, kind, value)
        for seq, kind in enumerate(KINDS)
        if (value := found.get(kind)) is not None
    ]
    if not changes:
        return [], "no change asked for (status, assignee, type and comment are all empty)"
    return changes, None


def plan_changes(
    chunk: Chunk,
    id_column: str,
    status_column: str,
    fixed_status: str | None,
    spec: ChangeSpec,
    status_map: dict[str, str] | None = None,
) -> Iterator[tuple[PlannedRow, list[PlannedChange]]]:
    """Each row's verdict and, for a row to send, its changes (an empty status: no status change)."""
    rows = plan_chunk(
        chunk, id_column, status_column, fixed_status, status_map, allow_empty_status=True
    )
    for offset, planned in enumerate(rows):
        if planned.outcome is not None:
            yield planned, []
            continue
        changes, error = _row_changes(planned, spec, chunk, offset)
        if error:
            yield planned._replace(outcome="invalid", error=error), []
        else:
            yield planned, changes
