"""bulk's own files in a folder that others may share: the one owner of how bulk writes.

The rule: bulk never writes through a symbolic link and never truncates a
file it did not create. A link planted where bulk writes (a lock, a
temporary file, the report, a job's snapshot) would otherwise make bulk
overwrite the link's target with the user's rights. Every file bulk writes
goes through this module:

- `replacing` (the report, the audit record, a job's pointer, snapshot and
  batch input, standard input's spool): a temporary file created with
  O_EXCL | O_NOFOLLOW under a random name, put in place by `os.replace` (which
  replaces a link found at the name, never its target), or with `new=True`
  linked in place, which fails if anything at all took the name.
- `JobLock` (the lock file): opened with O_NOFOLLOW, rewritten only when it is
  empty or holds a lock line of bulk's own.
- SQLite opens the journal itself; `refuse_foreign` lets the journal refuse a
  link, another user's file, or one that others may write, before it does.
  A dry run's journal lives in a fresh private folder (`tempfile`).

Files that bulk reads back and trusts (a job's pointer to its unfinished run,
the journal) must be bulk's own: owned by this user and writable by nobody
else, or a planted one would steer the next run (`read_file(own=...)`).
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

from ._exceptions import JobLocked, LockUnwritable, UsageError
from ._text import printable

__all__ = [
    "JobLock",
    "JobLocked",
    "beside",
    "read_file",
    "refuse_foreign",
    "refuse_link",
    "remove_leftovers",
    "replacing",
    "same_file",
]


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
def replacing(
    path: Path, mode: str = "w", *, new: bool = False, perms: int = _MODE, **open_args: Any
) -> Iterator[IO[Any]]:
    """A new file that takes `path`'s place when the block ends without an error.

    A reader never sees half a file. The temporary file is created exclusively
    under a random name beside `path` (tempfile.mkstemp would too, but with
    mode 0600, unlike every other file bulk writes). `os.replace` puts it in
    place of the name, never through a link found there.

    `new`: `path` must not exist (a job's timestamped files, whose names can
    be guessed): the finished file is hard-linked to the name, which fails if
    anything, even a dangling link, took it meanwhile; nothing is replaced.
    `perms`: e.g. 0o600 for a file bulk will trust later, which must not be
    group-writable whatever the umask.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, perms)
    try:
        with os.fdopen(fd, mode, **open_args) as handle:
            yield handle
        if new:
            _publish_new(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(path: Path) -> int:
    """Removes the temporary files a killed `replacing` of `path` left; how many.

    A run killed while writing its report left a partial copy of it beside it, ticket ids
    and all, for good (a review found four after twelve kills). Only for a path nobody else
    writes meanwhile (a report's files, under its batch's lock); only this user's regular
    files of `replacing`'s own names.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{12}}\.tmp")
    removed = 0
    try:
        names = [n for n in os.listdir(path.parent) if pattern.fullmatch(n)]
    except OSError:
        return 0
    for name in names:
        leftover = path.parent / name
        with contextlib.suppress(OSError):
            info = leftover.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
                leftover.unlink()
                removed += 1
    return removed


def _publish_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise UsageError(
            f"{printable(path, 200)}: something else took this name while bulk was writing "
            "it; bulk does not overwrite a file it did not create"
        ) from None
    except OSError as exc:
        # A file system without hard links (FAT, some network shares): the
        # name is checked, then replaced; only a race can still take it.
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(path):
            raise UsageError(
                f"{printable(path, 200)}: exists; bulk does not overwrite a file it did not create"
            ) from None
        os.replace(tmp, path)


def refuse_foreign(info: os.stat_result, path: Path, what: str) -> None:
    """Refuse (exit 2) a file bulk would trust that someone else could have written.

    Another user's file, or one that others may write, in a folder bulk
    shares could have been planted to steer a run (a pointer naming someone
    else's batch, a journal of their tickets).
    """
    shown = printable(path, 200)
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"{shown}: the {what} belongs to another user (uid {info.st_uid}); bulk trusts "
            "only its own files here (remove it if it is not yours)"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"{shown}: the {what} may be changed by other users "
            f"(mode {stat.filemode(info.st_mode)}); bulk trusts only files that only you can "
            f"change (chmod go-w {shown}, or remove it)"
        )


def read_file(path: Path, limit: int, *, own: str | None = None) -> bytes | None:
    """At most `limit` bytes of the regular file at `path`; None when there is none.

    Never through a link, and never waiting on a FIFO planted at the path.
    `own`: what the file is (`"job's pointer"`); bulk will trust it, so a
    link, anything but a regular file, or a file `refuse_foreign` refuses is
    an error (exit 2) instead of None.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if own is not None and exc.errno == errno.ELOOP:
            raise UsageError(
                f"{printable(path, 200)}: the {own} is a symbolic link; bulk does not "
                "follow links to files it trusts (remove the link)"
            ) from None
        return None
    # Checked before fdopen, which raises IsADirectoryError for a directory.
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if own is not None:
            raise UsageError(f"{printable(path, 200)}: the {own} is not a regular file")
        return None
    with os.fdopen(fd, "rb") as handle:
        if own is not None:
            refuse_foreign(info, path, own)
        return handle.read(limit)


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
                f"{self.what} is already running (lock {self.path} held by {holder}); "
                "this run did nothing"
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
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise LockUnwritable(
                    f"{printable(self.path, 200)}: cannot open ({exc.strerror})"
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
