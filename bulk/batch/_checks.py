"""The change options of a batch (`--assignee`, `--type`, `--comment`), checked before reading."""

from __future__ import annotations

from .._core._exceptions import UsageError
from ..plan import TYPES, Template, checked_assignee, checked_type

__all__ = ["checked_changes"]


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
