"""Where a batch made from an earlier report (retry, undo) sends: where that batch went.

Taking the current default instead would undo a sandbox batch against
production. So the batch's API root, recorded in its journal and audit
record, is the default; another one must be named with --base-url (and the
command line then says so before sending), and a SPACEBRING_BASE_URL that
points elsewhere is refused rather than silently obeyed or silently ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from .._core._config import checked_base_url, resolve_target
from .._core._exceptions import UsageError
from .._core._files import beside
from .._core._text import printable
from ..journal import read_meta
from ..report import recorded_base_url

__all__ = ["DerivedTarget", "batch_base_url", "derived_target"]

log = logging.getLogger("bulk")


class DerivedTarget(NamedTuple):
    """The run's --base-url (None: resolved as for any run) and where the batch went."""

    base_url: str | None
    batch_url: str | None  # None: not recorded

    @property
    def elsewhere(self) -> bool:
        """Whether the run goes to another API than the batch did."""
        return (
            self.base_url is not None
            and self.batch_url is not None
            and not same_api(self.base_url, self.batch_url)
        )


def same_api(a: str, b: str) -> bool:
    one, two = urlsplit(a), urlsplit(b)
    return (one.scheme.lower(), one.hostname, one.port, one.path.rstrip("/")) == (
        two.scheme.lower(),
        two.hostname,
        two.port,
        two.path.rstrip("/"),
    )


def where(url: str) -> str:
    """The host (and port, and path if any) of a checked URL: it holds no credentials."""
    parts = urlsplit(url)
    return printable(parts.netloc + parts.path.rstrip("/"), 200)


def batch_base_url(report: Path) -> str | None:
    """The API root the batch of `report` went to, from its journal and audit record.

    Both are bulk's own files (a planted one is refused or not read); when
    both say something they must agree, or which one was tampered with?
    """
    shown = printable(report, 200)
    meaning = read_meta(beside(report, ".journal")).get("meaning")
    found = [
        url
        for url in (
            meaning.get("base_url") if isinstance(meaning, dict) else None,
            recorded_base_url(report),
        )
        if isinstance(url, str) and url
    ]
    checked = [checked_base_url(url, f"the base URL recorded for {shown}") for url in found]
    if len(checked) == 2 and not same_api(*checked):
        raise UsageError(
            f"{shown}: its journal says the batch went to {where(checked[0])} but its audit "
            f"record says {where(checked[1])}; pass --base-url to say where to send"
        )
    return checked[0] if checked else None


def derived_target(report: Path, given: str | None, kind: str, *, dry_run: bool) -> DerivedTarget:
    """Where `kind` (retry, undo) of `report` sends, or a `UsageError` (exit 2) saying why not."""
    recorded = batch_base_url(report)
    shown = printable(report, 200)
    if given:
        chosen = checked_base_url(given, "--base-url")
        target = DerivedTarget(chosen, recorded)
        if target.elsewhere:
            assert recorded is not None
            log.warning(
                "%s goes to %s (--base-url), not to %s where the batch of %s went",
                kind,
                where(chosen),
                where(recorded),
                shown,
            )
        return target
    if recorded is None:
        missing = (
            f"{shown}: its journal and audit record do not say which API the batch went to "
            "(written by an older bulk, moved without them, or a dry run's)"
        )
        if not dry_run:
            raise UsageError(f"{missing}; name it explicitly with --base-url URL")
        log.warning("%s; a real %s will need --base-url", missing, kind)
        return DerivedTarget(None, None)
    configured = resolve_target(None, need_credentials=False)
    if configured.chosen_by and not same_api(configured.base_url, recorded):
        raise UsageError(
            f"{configured.chosen_by} points to {where(configured.base_url)}, but the batch of "
            f"{shown} went to {where(recorded)}; {kind} sends where the batch went: unset "
            f"it, or pass --base-url to choose either explicitly"
        )
    return DerivedTarget(recorded, recorded)
