"""bulk's own files in a folder that others may share: links refused, writes atomic, one lock.

A symbolic link planted where bulk writes (a lock, a temporary file, the
report) would make bulk overwrite the link's target with the user's rights.
So bulk never writes through a link: the paths it is given are refused when
they are links, and the files it creates are opened with O_NOFOLLOW, and
temporary ones with O_EXCL under a random name.

One process at a time per job or report: an `flock` the kernel drops if the
process dies. The lock file is opened without following a link (a planted
link would have its target truncated) and is rewritten only when it is empty
or holds a lock line of bulk's own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ._exceptions import JobLocked, UsageError
from ._text import printable

__all__ = ["JobLock", "JobLocked", "beside", "refuse_link", "replacing", "same_file"]


def beside(report: Path, suffix: str) -> Path:
    """A file that belongs to a report: `x.csv` -> `x.journal`, `x.run.json`, ..."""
    return report.with_name(report.name.rsplit(".", 1)[0] + suffix)


# Created files get the usual permissions (0o666 less the umask), as `open` gives.
_MODE = 0o666


def refuse_link(path: Path, what: str) -> None:
    if path.is_symlink():
        raise UsageError(
            f"{printable(path, 200)}: the {what} is a symbolic link; bulk does not write "
            "through links (remove the link or choose another --report)"
        )


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same place once resolved, or a hard link."""
    try:
        if a.resolve() == b.resolve():
            return True
        return os.path.samefile(a, b)
    except (OSError, RuntimeError):  # one of them does not exist (yet); a link loop
        return False


@contextlib.contextmanager
def replacing(path: Path, mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """A new file that takes `path`'s place when the block ends without an error.

    A reader never sees half a file. The temporary file is created exclusively
    under a random name beside `path` (tempfile.mkstemp would too, but with
    mode 0600, unlike every other file bulk writes). `os.replace` puts it in
    place of the name, never through a link found there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, _MODE)
    try:
        with os.fdopen(fd, mode, **open_args) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_OURS = re.compile(r"pid \d+ since \S+")


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
