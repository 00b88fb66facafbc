"""`python -m bulk`, and the `bulk` script's entry point."""

import sys

from bulk._core._exit import ExitCode


def entry() -> None:
    """The command line; a Ctrl-C while its modules load exits 130, not with a traceback."""
    try:
        from bulk.cli import console
    except KeyboardInterrupt:
        sys.stderr.write("bulk: interrupted\n")
        sys.exit(ExitCode.INTERRUPTED)
    console()


if __name__ == "__main__":
    entry()
