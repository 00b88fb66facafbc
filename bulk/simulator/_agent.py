"""An agent who changes tickets behind a batch's back, so that verify and undo can be tested.

At `SimConfig.agent_reopen = (share, second)`, `second` seconds after the
first request the simulator sees, the agent reopens (`new`) that share of
the tickets whose status a PUT had changed by then, as a person working the
queue would: a later status, a later `statusUpdateDate`. Which tickets it
took is kept in `reopened`, the truth a test checks the client against.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from ._tickets import iso

__all__ = ["Agent"]

REOPENED = "new"


class Agent:
    def __init__(self, seed: int | None = None) -> None:
        self.changed: dict[str, None] = {}  # tickets a PUT changed, in order (a set that keeps it)
        self.reopened: list[str] = []
        self._first: float | None = None
        self._done = False
        self._rng = random.Random(seed)

    def note_change(self, key: str) -> None:
        self.changed[key] = None

    def due(self, plan: tuple[float, float] | None, now: float) -> float | None:
        """The share to reopen if the agent's time has come (once), else None."""
        if self._first is None:
            self._first = now
        if plan is None or self._done:
            return None
        share, second = plan
        if now - self._first < second:
            return None
        self._done = True
        return share

    @staticmethod
    def set_status(tickets: dict[str, dict[str, Any]], key: str, status: str) -> None:
        """An agent sets one ticket's status, now (call under the simulator's lock)."""
        now = iso(datetime.now(UTC))
        tickets[key].update(status=status, statusUpdateDate=now, updateDate=now)

    def reopen(self, tickets: dict[str, dict[str, Any]], share: float) -> list[str]:
        """Reopen `share` of the changed tickets (call under the simulator's lock)."""
        changed = sorted(self.changed)
        chosen = self._rng.sample(changed, round(share * len(changed)))
        now = iso(datetime.now(UTC))
        for key in chosen:
            tickets[key].update(status=REOPENED, statusUpdateDate=now, updateDate=now)
        self.reopened += chosen
        return chosen
