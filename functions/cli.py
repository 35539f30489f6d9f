"""Operator CLI: `python -m functions.cli COMMAND ...` (each command takes `--json`).

Runs the service code in-process with the same environment variables as the
functions (`set -a; . .run/stack.env` for the local stack). Commands are
argparse subcommands: add one with a `_register_<name>` function and list it
in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from functions.model import ChangeEntry
from functions.ports import FeedReader

DEFAULT_LIMIT = 100


def _feed() -> FeedReader:
    from functions import app

    return app.store(app.cli_settings())  # type: ignore[no-any-return]


def _format_entry(entry: ChangeEntry) -> str:
    series = f" (series {entry.recurring_event_id})" if entry.recurring_event_id else ""
    fields = ", ".join(sorted(entry.fields)) or "-"
    at = entry.at.isoformat() if entry.at else "-"
    return f"{entry.seq:>8}  {entry.kind:<8} {entry.event_id}{series}  [{fields}]  {at}"


def cmd_changes(args: argparse.Namespace, out: TextIO, feed: Callable[[], FeedReader]) -> int:
    """Print the change feed of a subscription after a cursor."""
    page = feed().list_changes(args.subscription_id, args.after, args.limit)
    if args.json:
        json.dump({
            "subscription_id": args.subscription_id,
            "after": args.after,
            "next_cursor": page.next_cursor,
            "entries": [entry.to_json() for entry in page.entries],
        }, out, default=str)
        out.write("\n")
        return 0
    for entry in page.entries:
        out.write(_format_entry(entry) + "\n")
    out.write(f"next cursor: {page.next_cursor}\n")
    return 0


def _register_changes(commands: Any) -> None:
    parser = commands.add_parser("changes", help="show a subscription's change feed")
    parser.add_argument("subscription_id")
    parser.add_argument("--after", type=int, default=0, help="cursor (seq) to read after")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="entries at most")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.set_defaults(handler=cmd_changes)


def _register_admin(commands: Any) -> None:
    from functions.cli_admin import register

    register(commands)


COMMANDS: list[Callable[[Any], None]] = [_register_changes, _register_admin]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="python -m functions.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; returns the exit status."""
    from functions.config import ConfigError
    from functions.errors import CalsyncError

    args = build_parser().parse_args(argv)
    if getattr(args, "limit", 1) <= 0 or getattr(args, "after", 0) < 0:
        print("error: --limit must be positive and --after not negative", file=sys.stderr)
        return 2
    try:
        return int(args.handler(args, out or sys.stdout, _feed))
    except (ConfigError, CalsyncError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
