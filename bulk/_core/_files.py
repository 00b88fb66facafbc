"""One process at a time per job or report: an `flock` the kernel drops if the process dies.

The lock file sits in a folder others may write to, so it is opened without
following a link (a planted link would have its target truncated) and is
rewritten only when it is empty or holds a lock line of bulk's own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

from ._errors import UsageError
from ._inputs import printable

__all__ = ["JobLock", "JobLocked"]

_OURS = re.compile(r"pid \d+ since \S+")


class JobLocked(Exception):
    exit_code = 75  # EX_TEMPFAIL: another process holds the lock; try later


class JobLock:
    def __init__(self, path: Path, what: str = "job") -> None:
        self.path = path
        self.what = what
        self._handle: IO[str] | None = None

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._open()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = printable(handle.read(200).strip() or "another process", 100)
            handle.close()
            raise JobLocked(
                f"job is already running (lock {self.path} held by {holder}); this run did nothing"
            ) from None
        handle.seek(0)
        found = handle.read(200).strip()
        if found and not _OURS.fullmatch(found):
            handle.close()
            raise UsageError(
                f"{printable(self.path, 200)}: exists and is not a lock file of bulk's; "
                "bulk will not overwrite it (move it, or choose another --report)"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
        handle.flush()
        self._handle = handle

    def _open(self) -> IO[str]:
        # O_NONBLOCK: a FIFO planted at the path must not hang the open.
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageError(
                    f"{printable(self.path, 200)}: the lock file is a symbolic link; bulk does "
                    "not write through links (remove the link)"
                ) from None
            raise UsageError(f"{printable(self.path, 200)}: cannot open ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UsageError(f"{printable(self.path, 200)}: the lock path is not a regular file")
        # Held open until release(): closing the file would drop the lock.
        return open(fd, "r+", encoding="utf-8", errors="replace")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
