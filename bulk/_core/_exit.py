"""The process's exit status: the one table (CONTRACT.md, "Exit status")."""

from __future__ import annotations

import enum

__all__ = ["ExitCode"]


class ExitCode(enum.IntEnum):
    """An int, so it goes to `sys.exit`, JSON and comparisons with plain numbers as is."""

    OK = 0  # no row failed or invalid, none left unsent
    ROWS = 1  # the run finished; some rows failed or are invalid (or drifted: --verify)
    USAGE = 2  # bad usage or unreadable input; nothing was sent
    STOPPED = 3  # stopped early on purpose; report written, resumable
    LOCKED = 75  # EX_TEMPFAIL: another process holds the lock; nothing done, try later
    INTERRUPTED = 130  # 128 + SIGINT, as shells report it; resumable
