"""Job files: a batch described once in TOML and run by hand, cron or a systemd timer.

A job names where its tickets come from (a file, or the API's listing), which
of them to change and to what, how fast, and where its reports go. Secrets
stay in the environment only: there is no key for them, unknown keys are
refused, and `${VARIABLE}` is an allow-list by key. A variable may fill only
a value that bulk checks against a fixed shape (location ids, statuses,
numbers, durations, one of a few words), so whatever gets through is such a
value, never a secret; a name, path or free text (the job's name, its
description, source.path, the columns, select.types, report.folder) takes
none, since those reach file names, logs and errors as they are. An error
about an expanded value names the variable, never the value; and
`${SPACEBRING_*}` or a variable named like a secret is refused anywhere.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .._core._config import parse_duration
from .._core._exceptions import UsageError
from .._core._ids import UUID_PATTERN
from .._core._rates import parse_rate
from ..plan import checked_changes, checked_status, normalise_status

__all__ = ["ApiSource", "FileSource", "Job", "load_job"]

AGE_FIELDS = ("statusUpdateDate", "updateDate", "createDate")
# bulk's own settings and credentials, and anything named like a secret elsewhere.
_FORBIDDEN_VARIABLE = re.compile(
    r"^SPACEBRING_|SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE|API_?KEY", re.IGNORECASE
)
# The keys whose values may come from `${VARIABLE}` (see the module's docstring);
# a list's entries and a map's values count as their key.
EXPANDED_KEYS = frozenset(
    {
        "source.locations",
        "source.order",
        "source.page_size",
        "select.status",
        "select.older_than",
        "select.age_field",
        "select.assigned",
        "action.status",
        "action.map",
        *(f"run.{key}" for key in ("rate", "concurrency", "max_attempts", "timeout")),
        *(f"run.{key}" for key in ("deadline", "max_failure_rate", "limit")),
        "report.format",
    }
)
_EXPANDED_PATHS = frozenset(tuple(key.split(".")) for key in EXPANDED_KEYS)
ORDERS = ("updateDate:asc", "updateDate:desc", "createDate:asc", "createDate:desc")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _status(value: str) -> str:
    try:
        return checked_status(value)
    except UsageError as exc:  # pydantic reports ValueErrors with the key's name
        raise ValueError(str(exc)) from None


def _duration(value: str) -> str:
    parse_duration(value)  # raises ValueError with the accepted forms
    return value


class FileSource(_Strict):
    kind: Literal["file"]
    path: Path
    id_column: str | None = None
    status_column: str | None = None


class ApiSource(_Strict):
    kind: Literal["api"]
    locations: list[str] = Field(min_length=1)
    order: Literal[ORDERS] = "updateDate:asc"  # type: ignore[valid-type]
    page_size: int = Field(default=100, ge=1, le=100)

    @field_validator("locations")
    @classmethod
    def _uuids(cls, values: list[str]) -> list[str]:
        # One entry may hold several ids, comma-separated: locations = ["${LOCATIONS}"].
        found = [part.strip() for value in values for part in value.split(",") if part.strip()]
        for value in found:
            if not UUID_PATTERN.fullmatch(value.lower()):
                raise ValueError(f"{value!r} is not a location id (a UUID)")
        if not found:
            raise ValueError("no location ids")
        return list(dict.fromkeys(v.lower() for v in found))


class Select(_Strict):
    status: list[str] | None = None
    older_than: str | None = None
    age_field: Literal[AGE_FIELDS] = "statusUpdateDate"  # type: ignore[valid-type]
    types: list[str] | None = None
    assigned: bool | None = None

    @field_validator("status")
    @classmethod
    def _statuses(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else [_status(v) for v in values]

    @field_validator("older_than")
    @classmethod
    def _age(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value)

    @property
    def older_than_seconds(self) -> float | None:
        return None if self.older_than is None else parse_duration(self.older_than)


class Action(_Strict):
    status: str | None = None
    map: dict[str, str] | None = None
    # Changes besides status, the same for every row (checked as `bulk run` checks them).
    assignee: str | None = None
    type: str | None = None
    comment: str | None = None

    @field_validator("assignee", "type", "comment")
    @classmethod
    def _change(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        given = {"assignee": None, "type": None, "comment": None} | {info.field_name: value}
        try:
            assignee, kind = checked_changes(given["assignee"], given["type"], given["comment"])
        except UsageError as exc:
            raise ValueError(str(exc).replace("--", "")) from None
        return {"assignee": assignee, "type": kind}.get(str(info.field_name), value)

    @field_validator("status")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else _status(value)

    @property
    def changes(self) -> bool:
        return any(v is not None for v in (self.assignee, self.type, self.comment))

    @field_validator("map")
    @classmethod
    def _targets(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else {k: _status(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _one_of(self) -> Action:
        if self.status is not None and self.map is not None:
            raise ValueError("give exactly one of 'status' (one target) or 'map' (legacy -> new)")
        if self.status is None and self.map is None and not self.changes:
            raise ValueError(
                "give 'status' (one target), 'map' (legacy -> new), or a change: "
                "'assignee', 'type', 'comment'"
            )
        return self


class RunSettings(_Strict):
    rate: float | Literal["auto", "unlimited"] = 10.0
    concurrency: int | None = Field(default=None, ge=1)
    max_attempts: int = Field(default=6, ge=1)
    timeout: float = Field(default=30.0, gt=0)
    deadline: str | None = None
    max_failure_rate: float = Field(default=0.2, ge=0, le=1)
    limit: int | None = Field(default=None, ge=0)

    @field_validator("rate")
    @classmethod
    def _positive(cls, value: float | str) -> float | str:
        parse_rate(value)  # the one reading of a rate; the word stays as written
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: str | None) -> str | None:
        return None if value is None else _duration(value)


class ReportSettings(_Strict):
    folder: Path | None = None  # default: reports/<job name>
    format: Literal["csv", "jsonl", "parquet"] = "csv"


class Job(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    description: str = ""
    source: Annotated[FileSource | ApiSource, Field(discriminator="kind")]
    select: Select | None = None
    action: Action
    run: RunSettings = RunSettings()
    report: ReportSettings = ReportSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Job:
        if self.select is not None and isinstance(self.source, FileSource):
            raise ValueError("'select' needs the API listing as its source (kind = 'api')")
        file_map = isinstance(self.source, FileSource) and self.action.map is not None
        if file_map and not getattr(self.source, "status_column", None):
            raise ValueError("a 'map' over a file needs source.status_column (legacy values)")
        if isinstance(self.source, ApiSource) and self.action.map is not None:
            unknown = [k for k in self.action.map if normalise_status(k) is None]
            if unknown:
                raise ValueError(f"listed tickets have API statuses; not statuses: {unknown}")
            if len({normalise_status(k) for k in self.action.map}) != len(self.action.map):
                raise ValueError("the map names the same status twice")
        return self

    def api_map(self) -> dict[str, str] | None:
        """The map keyed by the API's own spelling (`inProgress`), as listed tickets carry it."""
        if self.action.map is None:
            return None
        return {str(normalise_status(k)): v for k, v in self.action.map.items()}

    def report_folder(self) -> Path:
        return self.report.folder or Path("reports") / self.name


def _expand(
    value: Any,
    env: Mapping[str, str],
    where: str,
    expanded: dict[str, str],
    key: tuple[str, ...] = (),
) -> Any:
    """`${VARIABLE}` filled from `env`; `expanded` maps each filled-in string to its variables.

    `key`: the keys leading to the value (`("run", "rate")`), without list indexes.
    """
    if isinstance(value, str):
        template = string.Template(value)
        names = template.get_identifiers()
        for name in names:
            if _FORBIDDEN_VARIABLE.search(name):
                raise UsageError(
                    f"{where}: ${{{name}}} is not allowed in a job file: credentials and "
                    "bulk's own SPACEBRING_* settings are read from the environment only "
                    "(a value here would reach report file names, logs and errors)"
                )
            if key[:2] not in _EXPANDED_PATHS:
                raise UsageError(
                    f"{where}: ${{{name}}} is not allowed in a job file at this key: a variable "
                    "may fill only a value of a fixed shape (location ids, statuses, numbers, "
                    "durations), never a name, path or free text, which would reach file "
                    "names, logs and errors as it is"
                )
        try:
            result = template.substitute(env)
        except KeyError as exc:
            raise UsageError(f"{where}: environment variable {exc.args[0]} is not set") from None
        except ValueError as exc:  # names a line and column, never a value
            raise UsageError(f"{where}: {exc}") from None
        if names:
            # Two variables may hold one value: the message names them all.
            known = expanded.get(result, "").split(", ") if result in expanded else []
            shown = dict.fromkeys([*known, *(f"${{{name}}}" for name in names)])
            expanded[result] = ", ".join(shown)
        return result
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{where}.{k}", expanded, (*key, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{where}[{i}]", expanded, key) for i, v in enumerate(value)]
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _message(error: Any, expanded: Mapping[str, str]) -> str:
    """pydantic's message, unless it would echo a value taken from the environment.

    Validators quote the value they refuse (`unknown status 'x'`), and a list
    entry may be one comma-separated piece of a variable's value: a message
    that contains any piece of an expanded value, in an error about that
    value, names the variable instead.
    """
    message = str(error["msg"])
    lowered = message.lower()
    for value in _strings(error.get("input")):
        variables = expanded.get(value)
        if variables is None:
            continue
        pieces = [value, *(part.strip() for part in value.split(","))]
        if any(piece and piece.lower() in lowered for piece in pieces):
            return f"the value of {variables} is not valid here (not shown)"
    return message


def load_job(path: Path, env: Mapping[str, str]) -> Job:
    """Read and check a job file; any problem is a `UsageError` naming the file and key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such job file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    expanded: dict[str, str] = {}
    values = {k: _expand(v, env, f"{path}: {k}", expanded, (k,)) for k, v in raw.items()}
    try:
        job = Job.model_validate(values)
    except ValidationError as exc:
        problems = []
        # Only the location and message: pydantic's input echo (`input_value=`) is
        # never shown, since it may hold a value from the environment.
        for error in exc.errors(include_url=False, include_input=True):
            key = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
            problems.append(f"{path}: {key or '(top level)'}: {_message(error, expanded)}")
        raise UsageError("\n".join(problems)) from None
    if isinstance(job.source, FileSource) and not job.source.path.is_absolute():
        # Relative to the job file, so cron (whose working folder is $HOME) finds it.
        source = job.source.model_copy(update={"path": path.parent / job.source.path})
        job = job.model_copy(update={"source": source})
    return job
