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
import textwrap
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TextIO

from functions.cli.output import (
    EXIT_CODES,
    FAILED,
    INTERRUPTED,
    NOT_FOUND,
    OK,
    USAGE,
    CliError,
    Output,
    classify,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# The variables each kind of work reads. `needs` must be set; `uses` are read
# when set (credentials for stopping channels, emulator hosts, optional keys).
FIRESTORE = ("GOOGLE_CLOUD_PROJECT",)
QUEUE = FIRESTORE + ("CALSYNC_REGION", "CALSYNC_TASKS_QUEUE", "CALSYNC_WORKER_URL")
QUEUE_OPTIONS = ("CALSYNC_TASKS_INVOKER_SA", "CLOUD_TASKS_EMULATOR_HOST")
CALENDAR_OPTIONS = ("CALSYNC_DELEGATION_SA", "CALSYNC_DELEGATION_KEY_FILE",
                    "CALSYNC_CREDENTIAL_KEYS", "CALSYNC_OAUTH_CLIENT_ID",
                    "CALSYNC_OAUTH_CLIENT_SECRET", "CALENDAR_API_ENDPOINT",
                    "CALSYNC_OAUTH_TOKEN_URI")


def load_settings(needs: Sequence[str], uses: Sequence[str] = (),
                  environ: Mapping[str, str] | None = None) -> Any:
    """Settings holding only the variables a command reads; raises ConfigError.

    A variable in `needs` must be set; one in `uses` is parsed when set. Every
    other variable is ignored, however malformed, so an operator never has to
    export a secret a command does not use.
    """
    from functions.config import Settings

    return Settings.from_env(environ, only=set(needs) | set(uses), needs=set(needs))


# -- changes -------------------------------------------------------------------


def _format_entry(entry: dict[str, Any]) -> str:
    recurring = entry.get("recurring_event_id")
    series = f" (series {recurring})" if recurring else ""
    fields = ", ".join(sorted(entry.get("fields") or {})) or "-"
    return (f"{entry['seq']:>8}  {entry['kind']:<8} {entry['event_id']}{series}  [{fields}]  "
            f"{entry.get('at') or '-'}")


def _feed() -> Any:
    """The feed reader the API's changes route uses (functions.api.feed); tests replace it."""
    from functions import app

    return app.feed(load_settings(FIRESTORE))


def cmd_changes(args: argparse.Namespace, output: Output) -> int:
    """Print the change feed of a subscription after a cursor (the API's changes route)."""
    from functions.api.feed import ChangesQuery, CursorAhead, CursorExpired, SubscriptionMissing
    from functions.lifecycle.subscriptions import SubscriptionNotFound

    query = ChangesQuery(cursor=args.after, limit=args.limit, kinds=tuple(args.kinds or ()),
                         fields=tuple(args.fields or ()))
    try:
        page = _feed().changes(args.subscription_id, query)
    except SubscriptionMissing as err:
        raise SubscriptionNotFound(args.subscription_id) from err
    except CursorAhead as err:
        raise CliError(USAGE, "invalid_argument", str(err),
                       {"change_seq": err.change_seq}) from err
    except CursorExpired as err:
        raise CliError(FAILED, "cursor_expired", f"{err}: bootstrap again",
                       {"oldest_available_seq": err.oldest_available_seq}) from err
    lines = [_format_entry(entry) for entry in page.changes]
    lines.append(f"next cursor: {page.next_cursor}" + (" (more after it)" if page.has_more
                                                          else ""))
    output.result({
        "subscription_id": args.subscription_id,
        "after": args.after,
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
        "entries": page.changes,
    }, "\n".join(lines))
    return OK


def _names(allowed: tuple[str, ...] | None = None) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [n for n in names if allowed is not None and n not in allowed]
        if not names or unknown:
            raise argparse.ArgumentTypeError(
                f"want a comma-separated list{' of ' + ', '.join(allowed) if allowed else ''}")
        return names

    return parse


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from err
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, not {value}")
        return value

    return parse


def _register_changes(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        commands, common, "changes", "show a subscription's change feed",
        "Print the change feed of a subscription: one line per change (cursor, kind, "
        "event id, changed fields, time), then the cursor to continue after.")
    parser.add_argument("subscription_id", metavar="SUBSCRIPTION_ID",
                            help="the subscription (see `list`)")
    parser.add_argument("--after", type=_whole(0), default=0, metavar="CURSOR",
                        help="show changes after this cursor (default 0: from the start)")
    parser.add_argument("--limit", type=_whole(1, MAX_LIMIT), default=DEFAULT_LIMIT,
                        metavar="N", help=f"scan at most N changes (1-{MAX_LIMIT}, "
                                          f"default {DEFAULT_LIMIT})")
    parser.add_argument("--kinds", type=_names(("created", "updated", "deleted")),
                        metavar="KIND,...", help="show only these kinds (a filter: the "
                                                 "cursor still moves past the others)")
    parser.add_argument("--fields", type=_names(), metavar="FIELD,...",
                        help="show `updated` changes only when they touch one of these "
                             "fields (created and deleted always show)")
    parser.set_defaults(handler=cmd_changes)


# -- the parser ------------------------------------------------------------------


class UsageError(Exception):
    """Bad arguments (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def add_command(commands: Any, common: argparse.ArgumentParser, name: str, summary: str,
                description: str) -> argparse.ArgumentParser:
    """A subcommand with the shared options, its description and the exit codes."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 78), epilog=EXIT_CODES,
        parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command."""
    from functions.cli import admin as cli_admin
    from functions.cli import keys as cli_keys

    parser = _Parser(prog="python -m functions.cli", description=__doc__, epilog=EXIT_CODES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true",
                        help="print one JSON object (the result, or the error) on stdout")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    cli_admin.register(commands, common)
    _register_changes(commands, common)
    cli_keys.register(commands, common)
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


__all__ = ["FAILED", "NOT_FOUND", "OK", "USAGE", "load_settings", "main"]

if __name__ == "__main__":
    sys.exit(main())
