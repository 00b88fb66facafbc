"""`<report>.html`: one self-contained page per run, from its journal and audit record.

Rendered with jinja2 (autoescaped: every value from the input or a server is
text, never markup) and pygal's SVG (`_charts`). Both are imported only
here, when a page is rendered. The page fetches nothing: its Content
Security Policy allows no source but its own inline style and the one script
whose hash it names, so even a planted link cannot make it load anything.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shlex
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from .._core._exceptions import UsageError
from .._core._files import beside, read_file, replacing
from .._core._text import printable
from .._version import __version__
from ..journal import JournalFacts, read_facts
from ._audit import audit_path, read_audit
from ._verdict import Verdict, recorded_count, verdict

__all__ = [
    "PAGE_SUFFIX",
    "is_page",
    "page_path",
    "render_again",
    "write_page",
    "write_page_quietly",
]

log = logging.getLogger("bulk")

PAGE_SUFFIX = ".html"
_GENERATOR = '<meta name="generator" content="bulk '
_ORDER = ("updated", "unchanged", "failed", "invalid", "skipped")
_SECRETISH = ("secret", "token", "password", "credential", "key")


def page_path(report: Path) -> Path:
    """Where the page of `report` lives: `x.report.csv` -> `x.report.html`."""
    return beside(report, PAGE_SUFFIX)


def is_page(path: Path) -> bool:
    """Whether the file at `path` is a page bulk wrote (it may be replaced)."""
    head = read_file(path, 64 * 1024) if path.is_file() else None
    return head is not None and _GENERATOR.encode() in head[:4096]


class Tile(NamedTuple):
    label: str
    value: str
    note: str = ""
    kind: str = ""


def write_page(
    report: Path,
    journal: Path,
    record: Mapping[str, Any] | None,
    *,
    pending_reason: str = "not sent",
) -> Path:
    """Render the page of the run that wrote `report` (record: its audit record, if any)."""
    facts = read_facts(journal, pending_reason)
    path = page_path(report)
    html = render(facts, record, report)
    with replacing(path, "w", encoding="utf-8") as handle:
        handle.write(html)
    return path


def render_again(report: Path) -> Path:
    """`bulk report REPORT`: the page again, from the journal and audit record beside it."""
    if not report.is_file():
        raise UsageError(f"{printable(report, 200)}: no such report; nothing to render")
    journal = beside(report, ".journal")
    if not journal.is_file():
        raise UsageError(
            f"{printable(journal, 200)}: no journal beside the report (a dry run keeps none: "
            "its page was written when it ran); nothing to render"
        )
    record = read_audit(audit_path(report))
    reason = record.get("stop_reason") if record else None
    return write_page(
        report, journal, record, pending_reason=reason if isinstance(reason, str) else "not sent"
    )


def render(facts: JournalFacts, record: Mapping[str, Any] | None, report: Path) -> str:
    import jinja2

    from ._charts import MIN_SECONDS, charts

    template_dir = resources.files("bulk.report") / "templates"
    script = (template_dir / "page.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bulk.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    judged = verdict(record, facts.outcomes, facts.pending)
    return env.get_template("page.html.j2").render(
        version=__version__,
        script=script,
        script_hash=f"sha256-{digest}",
        verdict=judged,
        title=_title(judged, report),
        tiles=_outcome_tiles(facts),
        run_tiles=_run_tiles(facts, record),
        charts=charts(facts.seconds),
        has_seconds=bool(facts.seconds),
        min_seconds=MIN_SECONDS,
        invocations=len({second.invocation for second in facts.seconds}),
        facts=facts,
        rows=[_row(r) for r in facts.rows],
        outcome_names=sorted({r["outcome"] for r in facts.rows}),
        report_name=printable(report.name, 200),
        run_facts=_run_facts(facts, record, report),
        commands=_commands(facts, record, report),
    )


def _title(judged: Verdict, report: Path) -> str:
    return f"{judged.title}: {printable(report.name, 120)}"


def _outcome_tiles(facts: JournalFacts) -> list[Tile]:
    counts = dict(facts.outcomes)
    counts["skipped"] = counts.get("skipped", 0) + facts.pending
    names = [*_ORDER, *sorted(set(counts) - set(_ORDER))]
    tiles = [Tile("rows", f"{facts.total:,}")]
    for name in names:
        value = counts.get(name, 0)
        note = f"{facts.pending:,} not sent" if name == "skipped" and facts.pending else ""
        tiles.append(Tile(printable(name, 30), f"{value:,}", note, name if value else ""))
    return tiles


def _run_tiles(facts: JournalFacts, record: Mapping[str, Any] | None) -> list[Tile]:
    throttled = sum(s.throttled for s in facts.seconds)
    if not facts.seconds and record:
        throttled = _int(record.get("throttled_this_run"))
    wall = _wall_seconds(record)
    sending = _sending_seconds(facts)
    rate = facts.requests / sending if sending else None
    limit = _limit(record)
    # Not the terminal's "effective rate" (this invocation's sends over its whole time,
    # reading included): the pace while requests went out, over every invocation.
    rate_note = f"while sending; limit {limit}" if limit else "while sending"
    return [
        Tile("requests", f"{facts.requests:,}"),
        Tile("retries", f"{facts.retries:,}", "", "failed" if facts.retries else ""),
        Tile("429s", f"{throttled:,}", "" if facts.seconds else "this invocation", ""),
        Tile("wall time", _duration(wall) if wall is not None else "?", "all invocations"),
        Tile("sending rate", f"{rate:.1f}/s" if rate else "-", rate_note),
    ]


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _wall_seconds(record: Mapping[str, Any] | None) -> float | None:
    runs = record.get("invocations") if record else None
    if not isinstance(runs, list) or not runs:
        return None
    total = 0.0
    for run in runs:
        try:
            began = datetime.fromisoformat(str(run["started_at"]))
            ended = datetime.fromisoformat(str(run["ended_at"]))
        except (KeyError, TypeError, ValueError):
            return None
        total += max(0.0, (ended - began).total_seconds())
    return total


def _sending_seconds(facts: JournalFacts) -> float:
    """Seconds spent sending: each invocation's span of recorded seconds."""
    spans: dict[str, list[float]] = {}
    for second in facts.seconds:
        spans.setdefault(second.invocation, []).append(second.at)
    return sum(max(ats) - min(ats) + 1 for ats in spans.values())


def _limit(record: Mapping[str, Any] | None) -> str:
    options = record.get("options") if record else None
    rate = options.get("rate") if isinstance(options, dict) else None
    if rate is None:
        return "none (unpaced)" if isinstance(options, dict) else ""
    if isinstance(rate, int | float):
        return f"{rate:g}/s"
    return printable(rate, 20)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{seconds:.1f}s"


def _row(row: Mapping[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else printable(v, 300) for k, v in row.items()}


def _safe_options(options: object) -> dict[str, str]:
    """Options as shown: never a secret (none should be there; a name like one is dropped)."""
    if not isinstance(options, dict):
        return {}
    shown = {}
    for key, value in options.items():
        name = str(key)
        if value is None or any(word in name.lower() for word in _SECRETISH):
            continue
        if name == "base_url" and isinstance(value, str):
            value = _bare_url(value)
        shown[printable(name, 40)] = printable(value, 200)
    return shown


def _bare_url(url: str) -> str:
    """Scheme, host and path only: user info, a query or a fragment could hold a secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(not shown)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _run_facts(
    facts: JournalFacts, record: Mapping[str, Any] | None, report: Path
) -> list[tuple[str, str]]:
    meaning = facts.meta.get("meaning")
    meaning = meaning if isinstance(meaning, dict) else {}
    record = record or {}
    runs = record.get("invocations")
    out = [
        ("report", printable(report, 300)),
        ("input", printable(record.get("input") or "?", 300)),
        (
            "input SHA-256",
            printable(record.get("input_sha256") or meaning.get("input_sha256") or "?", 80),
        ),
        ("sent to", _bare_url(str(meaning.get("base_url") or "?"))),
        # The batch began when it was planned (the first invocation; the record's own
        # `started_at` is its last's), and a killed invocation leaves seconds in the journal
        # but no record: the journal counts them all.
        (
            "started",
            printable(facts.meta.get("created_at") or record.get("started_at") or "?", 40),
        ),
        ("ended", printable(record.get("ended_at") or "?", 40)),
        ("invocations", _invocations(facts, runs)),
        ("written by", printable(record.get("tool") or "?", 40)),
        ("page rendered by", f"bulk {__version__}"),
    ]
    derived = record.get("derived_from")
    if isinstance(derived, dict) and derived.get("kind"):
        out.append((printable(derived["kind"], 10) + " of", printable(derived.get("report"), 300)))
    stop = record.get("stop_reason")
    if isinstance(stop, str):
        out.append(("stop reason", printable(stop, 300)))
    options = _safe_options(record.get("options"))
    out.extend((f"option {k}", v) for k, v in options.items())
    return out


def _invocations(facts: JournalFacts, runs: object) -> str:
    recorded = len(runs) if isinstance(runs, list) else 0
    seen = len({second.invocation for second in facts.seconds})
    count = max(recorded, seen)
    return str(count) if count else "?"


def _commands(
    facts: JournalFacts, record: Mapping[str, Any] | None, report: Path
) -> list[tuple[str, str]]:
    shown = shlex.quote(printable(report, 300))
    out = []
    if facts.pending:
        out.append(("resume (sends only what is not final)", _resume(record, shown)))
    if facts.outcomes.get("failed"):
        out.append(("send the failed rows again", f"bulk retry {shown}"))
    # Unsent rows are the batch's to send when it resumes (a retry leaves them to it).
    if not facts.pending and facts.outcomes.get("skipped"):
        out.append(
            ("send failed and skipped rows again", f"bulk retry {shown} --only failed,skipped")
        )
    if recorded_count(record, "drifted"):
        out.append(("set the drifted tickets' status again", f"bulk retry {shown} --only drifted"))
    if facts.outcomes.get("updated"):
        out.append(("see what undo would do", f"bulk undo {shown} --dry-run"))
        out.append(("undo: put the updated tickets back", f"bulk undo {shown}"))
    out.append(("render this page again", f"bulk report {shown}"))
    return out


def _resume(record: Mapping[str, Any] | None, report: str) -> str:
    record = record or {}
    options = record.get("options") if isinstance(record.get("options"), dict) else {}
    assert isinstance(options, dict)
    derived = record.get("derived_from")
    if isinstance(derived, dict) and derived.get("kind") in ("retry", "undo"):
        earlier = shlex.quote(printable(derived.get("report"), 300))
        return f"bulk {derived['kind']} {earlier} --report {report}"
    if options.get("status_map"):
        return (
            "run the job again (bulk job run JOB.toml): its map cannot be given on the command line"
        )
    source = str(record.get("input") or "INPUT")
    parts = ["bulk", "run", shlex.quote(printable(source, 300)), "--report", report]
    for flag, key in (
        ("--status", "status"),
        ("--id-column", "id_column"),
        ("--status-column", "status_column"),
        ("--concurrency", "concurrency"),
        ("--assignee", "assignee"),
        ("--type", "type"),
        ("--comment", "comment"),
    ):
        value = options.get(key)
        if value is None:
            continue
        shown = printable(value, 2000)
        if shown != str(value):
            # Cut or cleaned for the page, it would not be the batch's own value any more.
            return f"run the batch's own command again with --report {report}: its {flag} " + (
                "cannot be shown here exactly"
            )
        parts += [flag, shlex.quote(shown)]
    if options.get("base_url"):
        parts += ["--base-url", shlex.quote(_bare_url(str(options["base_url"])))]
    rate = options.get("rate", 10.0)
    if rate != 10.0:
        parts += ["--rate", "unlimited" if rate is None else shlex.quote(printable(rate, 20))]
    return " ".join(parts)


def write_page_quietly(
    report: Path, journal: Path, record: Mapping[str, Any] | None, pending_reason: str
) -> Path | None:
    """The page after a run: its failure is logged, never the run's (the report is the truth)."""
    try:
        return write_page(report, journal, record, pending_reason=pending_reason)
    except Exception as exc:  # a view of the run must never turn a finished run into a crash
        log.warning(
            "could not write the page %s: %s",
            printable(page_path(report), 200),
            printable(exc, 200),
        )
        return None
