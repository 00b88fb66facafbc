"""A batch that changes more than status: its columns, its plan, its credentials check.

Only a batch that asks for an assignee, a type or a comment (an option, or a
column of the input) takes this path; a status-only batch plans, sends and
reports exactly as before and pays nothing for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from .._core._config import Credentials, credentials_from_env
from .._core._exceptions import UsageError
from .._core._text import printable
from ..input import Source
from ..journal import ChangeLog, Journal, change_columns
from ..plan import CHANGE_COLUMNS, ChangeSpec, plan_changes
from ._options import RunOptions

__all__ = [
    "change_spec",
    "check_comment_credentials",
    "comments_posted",
    "extra_columns",
    "plan_with_changes",
    "report_change_columns",
]

log = logging.getLogger("bulk")


def extra_columns(options: RunOptions) -> tuple[str, ...]:
    """The input columns to read when present: the change columns and the template's."""
    template = options.comment_template
    return CHANGE_COLUMNS + (template.columns if template else ())


def change_spec(options: RunOptions, source: Source) -> ChangeSpec | None:
    """What the batch changes besides status, or None for a status-only batch."""
    # With one status, assignee or type for every row the input is a list of tickets (an
    # export, say): its other change columns are not read, or `--status closed` on an export
    # would also re-type and reassign every ticket to the export's (maybe stale) values. A
    # --comment alone keeps them: a templated comment beside per-row changes is one batch.
    given = [
        options.named.format(name)
        for name, value in (
            ("status", options.status),
            ("assignee", options.assignee),
            ("type", options.type),
        )
        if value is not None
    ]
    spec = ChangeSpec(
        assignee=options.assignee,
        type=options.type,
        comment=options.comment_template,
        columns={wanted: wanted for wanted in source.extras},
        from_columns=not given,
    )
    template = options.comment_template
    # A placeholder the input cannot fill is a mistake in the command, not in each row.
    for name in template.columns if template else ():
        if name not in source.extras:
            raise UsageError(
                f"{source.name}: {options.named.format('comment')} fills "
                f"{{{printable(name, 40)}}} from a column of that name, which the input does not "
                "have; nothing sent"
            )
    ignored = [
        source.extras[kind]
        for kind in CHANGE_COLUMNS
        if given and kind in source.extras and not (template and kind in template.columns)
    ]
    if given and not source.status_column:
        ignored = source.unread_status + ignored
    if ignored:
        shown = ", ".join(repr(printable(c, 40)) for c in ignored)
        log.warning(
            f"{source.name}: column(s) {shown} not used: {' and '.join(given)} "
            f"give{'s' if len(given) == 1 else ''} every row's change (without "
            f"{'it' if len(given) == 1 else 'them'}, each row's own values are sent)"
        )
    return spec if spec.any else None


def check_comment_credentials(spec: ChangeSpec | None, credentials: Credentials | None) -> None:
    """The API allows creating a comment only with OAuth2 (Bearer): Basic is refused up front.

    A dry run needs no credentials, but those configured are checked all the same: its exit 0
    says the real run would go ahead.
    """
    comments = spec is not None and (spec.comment is not None or "comment" in spec.columns)
    if comments and credentials is None:
        with contextlib.suppress(UsageError):  # none, or not yet complete: the run says so
            credentials = credentials_from_env()
    if comments and credentials is not None and credentials.scheme == "basic":
        raise UsageError(
            "comments need OAuth2 (Bearer) credentials: the Spacebring API allows "
            "POST /support/tickets/v1/comment only with OAuth2, not with Basic "
            "(SPACEBRING_CLIENT_ID/SECRET alone); set SPACEBRING_ACCESS_TOKEN and "
            "SPACEBRING_NETWORK_ID, or SPACEBRING_REFRESH_TOKEN and SPACEBRING_NETWORK_ID "
            "beside the client id and secret; nothing was sent"
        )


def plan_with_changes(
    journal: Journal,
    source: Source,
    options: RunOptions,
    spec: ChangeSpec,
    check_interrupt: Callable[[threading.Event | None], None],
    stop: threading.Event | None,
) -> int:
    """Plan every row and its changes into the journal; duplicates compare whole change sets."""
    changes = ChangeLog(journal.path)
    try:
        rows = 0
        for chunk in source.chunks():
            check_interrupt(stop)
            planned = list(
                plan_changes(
                    chunk,
                    source.id_column,
                    source.status_column,
                    options.status,
                    spec,
                    options.status_map,
                )
            )
            journal.add_planned(row for row, _ in planned)
            changes.add(change for _, row_changes in planned for change in row_changes)
            rows += len(planned)
        if rows == 0:
            raise UsageError(f"{source.name}: no data rows (only a header, or an empty file)")
        check_interrupt(stop)
        changes.settle_duplicates()
    finally:
        changes.close()
    journal.settle_duplicates()
    return rows


def comments_posted(path: Path) -> int:
    """How many comments the journal at `path` posted (or may have: a POST left started)."""
    if not path.is_file():
        return 0
    changes = ChangeLog(path)
    try:
        states = changes.counts().get("comment", {})
    finally:
        changes.close()
    return states.get("updated", 0) + states.get("started", 0)


def post_in_flight(path: Path) -> str | None:
    """When the journal at `path` sent the latest comment POST still of unknown outcome."""
    if not path.is_file():
        return None
    changes = ChangeLog(path)
    try:
        return changes.last_post_in_flight()
    finally:
        changes.close()


def report_change_columns(journal: Journal) -> tuple[str, ...]:
    """The report's columns for the kinds of change this batch asked for."""
    changes = ChangeLog(journal.path)
    try:
        return change_columns(changes.kinds())
    finally:
        changes.close()
