"""`changes`: a subscription's change feed after a cursor, read through the API's feed
reader (same filters, 400 past the end, 410 after retention)."""

from __future__ import annotations

import argparse
from typing import Any

from functions.cli.common import (
    DEFAULT_LIMIT,
    FIRESTORE,
    MAX_LIMIT,
    add_command,
    load_settings,
    names_list,
    whole_number,
)
from functions.cli.output import FAILED, OK, USAGE, CliError, Output


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
    from functions.api.feed import ChangesQuery
    from functions.errors import CursorAhead, CursorExpired

    query = ChangesQuery(cursor=args.after, limit=args.limit, kinds=tuple(args.kinds or ()),
                         fields=tuple(args.fields or ()))
    try:
        page = _feed().changes(args.subscription_id, query)
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


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        commands, common, "changes", "show a subscription's change feed",
        "Print the change feed of a subscription: one line per change (cursor, kind, "
        "event id, changed fields, time), then the cursor to continue after.")
    parser.add_argument("subscription_id", metavar="SUBSCRIPTION_ID",
                            help="the subscription (see `list`)")
    parser.add_argument("--after", type=whole_number(0), default=0, metavar="CURSOR",
                        help="show changes after this cursor (default 0: from the start)")
    parser.add_argument("--limit", type=whole_number(1, MAX_LIMIT), default=DEFAULT_LIMIT,
                        metavar="N", help=f"scan at most N changes (1-{MAX_LIMIT}, "
                                          f"default {DEFAULT_LIMIT})")
    parser.add_argument("--kinds", type=names_list(("created", "updated", "deleted")),
                        metavar="KIND,...", help="show only these kinds (a filter: the "
                                                 "cursor still moves past the others)")
    parser.add_argument("--fields", type=names_list(), metavar="FIELD,...",
                        help="show `updated` changes only when they touch one of these "
                             "fields (created and deleted always show)")
    parser.set_defaults(handler=cmd_changes)
