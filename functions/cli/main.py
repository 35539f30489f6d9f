"""Operate calsync: subscribe calendars, inspect them and their change feeds, rotate keys.

The CLI acts directly on the deployment's Firestore database and task queue,
reading the same environment variables as the functions (for the local
stack: `set -a; . .run/stack.env; set +a`). Each command needs only the
variables it uses, and Google credentials from `gcloud auth
application-default login` (or GOOGLE_APPLICATION_CREDENTIALS).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from functions.cli.common import Parser, UsageError
from functions.cli.output import (
    EXIT_CODES,
    FAILED,
    INTERRUPTED,
    NOT_FOUND,
    OK,
    USAGE,
    CliError,
    Output,
)
from functions.cli.wiring import classify

# -- the parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command."""
    from functions.cli import accounts, admin, changes, keys

    parser = Parser(prog="python -m functions.cli", description=__doc__, epilog=EXIT_CODES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print one JSON object (the result, or the error) on stdout")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=Parser)
    admin.register(commands, common)
    accounts.register(commands, common)
    changes.register(commands, common)
    keys.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Run one command; returns the exit status (never raises, never a traceback)."""
    # Ctrl-C can surface as another error (a client library's cleanup failing
    # on top of it): remember that it happened, whatever is raised.
    interrupted = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum: int, frame: Any) -> None:
            interrupted.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return _main(argv, out, err, interrupted)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: Sequence[str] | None, out: TextIO | None, err: TextIO | None,
          interrupted: threading.Event) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    output = Output("--json" in argv, out, err)
    try:
        try:
            args = build_parser().parse_args(argv)
        except UsageError as bad:
            return output.error(CliError(USAGE, "invalid_argument", str(bad)))
        except SystemExit as done:  # --help
            return int(done.code or 0)
        output.json = bool(getattr(args, "json", False))
        from functions import logs

        with logs.to_stderr(json_lines=output.json):
            return int(args.handler(args, output))
    except KeyboardInterrupt:
        output.error(CliError(INTERRUPTED, "unavailable", "interrupted",
                              {"reason": "interrupted"}))
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nothing to flush.
        if out is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    except Exception as failure:  # noqa: BLE001 - every failure is one message, no traceback
        if interrupted.is_set() or _interrupted(failure):
            # Ctrl-C inside a transaction: the client's rollback fails on top of it.
            output.error(CliError(INTERRUPTED, "unavailable", "interrupted",
                                  {"reason": "interrupted"}))
            return INTERRUPTED
        return output.error(classify(failure))


def _interrupted(failure: BaseException) -> bool:
    seen: BaseException | None = failure
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


__all__ = ["FAILED", "NOT_FOUND", "OK", "USAGE", "main"]

if __name__ == "__main__":
    sys.exit(main())
