"""The simulator's ticket data: the spec's shape, made-up tickets, and tickets read from or
written to a CSV."""

from __future__ import annotations

import csv
import random
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = [
    "CSV_COLUMNS",
    "LOCATIONS",
    "STATUSES",
    "TICKET_FIELDS",
    "TICKET_TYPES",
    "UUID_RE",
    "iso",
    "load_tickets",
    "make_tickets",
    "write_tickets",
]

STATUSES = ("new", "inProgress", "solved", "closed")
# The spec's enum for a ticket's category.
TICKET_TYPES = (
    "access", "accountAndBilling", "bookings", "cleaning", "discriminationAndHarassment",
    "internet", "mailAndPackages", "noiseAndAcoustics", "offensiveOrObjectionableContent",
    "other", "printing", "repairAndMaintenance", "temperatureAndVentilation", "websiteAndApp",
)  # fmt: skip
CSV_COLUMNS = (
    "id",
    "status",
    "locationRef",
    "type",
    "createDate",
    "updateDate",
    "statusUpdateDate",
)

# The spec's ticket schema has additionalProperties: false, so nothing else may ever be served.
TICKET_FIELDS = frozenset(
    {*CSV_COLUMNS, "number", "description", "userAssignee", "userRequester", "userRefAssignee"}
    | {"membershipAssignee", "membershipRefAssignee", "membershipRequester"}
    | {"membershipRefRequester"}
)
_CSV_TEXT_FIELDS = frozenset({*CSV_COLUMNS, "description"})
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DESCRIPTIONS = (
    "The badge reader on floor {n} does not accept my card.",
    "Wi-Fi keeps dropping in meeting room {n}.",
    "Invoice {n} shows a desk I cancelled last month.",
    "Parcel for desk {n} has not arrived at reception.",
    "Booking for room {n} disappeared from the app.",
)


def iso(moment: datetime) -> str:
    # The shape of JavaScript's toISOString(), which is what the real API emits.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _location_ids(count: int) -> list[str]:
    # Locations stay the same whatever the seed, like the fixed sites of one network; asking
    # for more only adds ids after these.
    location_rng = random.Random(4242)
    return [str(uuid.UUID(int=location_rng.getrandbits(128), version=4)) for _ in range(count)]


# The location ids make_tickets spreads tickets over by default (locations=3), in order.
LOCATIONS: tuple[str, ...] = tuple(_location_ids(3))


def make_tickets(
    n: int,
    *,
    seed: int = 0,
    statuses: Sequence[str] = STATUSES,
    locations: int = 3,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Deterministic, realistic tickets; dates fall in the 90 days before `now`.

    createDate is uniform over those 90 days, so about 84% of tickets are older than 14 days.
    Every ticket has a statusUpdateDate (a "new" ticket's is its createDate) and
    createDate <= statusUpdateDate <= updateDate. Tickets go to `locations` ids, the first of
    which are LOCATIONS. `now` defaults to the start of the current UTC day so that repeated
    calls agree.
    """
    unknown = set(statuses) - set(STATUSES)
    if unknown or not statuses:
        raise ValueError(f"statuses must be a non-empty subset of {STATUSES}, got {unknown}")
    if now is None:
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    location_ids = _location_ids(locations)
    rng = random.Random(seed)
    return [
        _make_ticket(rng, number, statuses[(number - 1) % len(statuses)], location_ids, now)
        for number in range(1, n + 1)
    ]


def _make_ticket(
    rng: random.Random, number: int, status: str, location_ids: list[str], now: datetime
) -> dict[str, Any]:
    # The draws keep the order they always had, so a seed makes the same tickets as before.
    created = now - timedelta(seconds=rng.uniform(0, timedelta(days=90).total_seconds()))
    changed = created if status == "new" else created + (now - created) * rng.random()
    updated = changed + (now - changed) * rng.random()
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "number": number,
        "locationRef": rng.choice(location_ids),
        "type": rng.choice(TICKET_TYPES),
        "status": status,
        "description": rng.choice(_DESCRIPTIONS).format(n=rng.randint(1, 12)),
        "createDate": iso(created),
        "updateDate": iso(updated),
        "statusUpdateDate": iso(changed),
        "userAssignee": None,
        "userRequester": None,
    }


def load_tickets(path: str | Path) -> list[dict[str, Any]]:
    """Read tickets from a CSV with at least an `id` column; other fields are made up."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [
            (line, {(k or "").strip(): (v or "").strip() for k, v in row.items()})
            for line, row in enumerate(csv.DictReader(handle), start=2)
        ]
    for _, row in rows:
        row.setdefault("id", row.get("ticket_id", ""))
    rows = [(line, row) for line, row in rows if row["id"]]
    filler = make_tickets(len(rows))
    for (line, row), ticket in zip(rows, filler, strict=True):
        if not UUID_RE.match(row["id"]):
            raise ValueError(f"{path}:{line}: id {row['id']!r} is not a UUID")
        if row.get("status") and row["status"] not in STATUSES:
            raise ValueError(f"{path}:{line}: status {row['status']!r} is not one of {STATUSES}")
        ticket.update({k: v for k, v in row.items() if k in _CSV_TEXT_FIELDS and v})
        if row.get("number", "").isdigit():
            ticket["number"] = int(row["number"])
    return filler


def write_tickets(tickets: Iterable[dict[str, Any]], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(tickets)
