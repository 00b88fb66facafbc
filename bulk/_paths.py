"""Writing bulk's own files safely in a folder that others may share.

A symbolic link planted where bulk writes (a lock, a temporary file, the
report) would make bulk overwrite the link's target with the user's rights.
So bulk never writes through a link: the paths it is given are refused when
they are links, and the files it creates are opened with O_NOFOLLOW, and
temporary ones with O_EXCL under a random name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ._errors import UsageError
from ._inputs import printable

__all__ = ["refuse_link", "replacing", "same_file"]

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
