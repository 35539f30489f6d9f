"""Operator commands on accounts: connect-account, accounts, account-status,
disconnect-account.

Each prints a readable line or table, or one JSON object with `--json`; the exit
statuses are those of every command (3: no such account).
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from functions.cli.admin import _read_refresh_token, _table, _when
from functions.cli.common import (
    CALENDAR_OPTIONS,
    FIRESTORE,
    QUEUE,
    QUEUE_OPTIONS,
    add_command,
    load_settings,
)
from functions.cli.output import OK, USAGE, CliError, Output

_CREDENTIALS = re.compile(r"^(dwd|bearer|oauth:[A-Za-z0-9_-]{1,128})$")
_ROLES = ("reader", "writerWithoutPrivateAccess", "writer", "owner")


def _reader() -> Any:
    """The account service for reading: Firestore only (no Calendar or Cloud Tasks client)."""
    from functions import app

    return app.account_reader(load_settings(FIRESTORE))


def cmd_connect(args: argparse.Namespace, output: Output) -> int:
    """Connect an account (or find it) and queue the listing of its calendars."""
    from functions import app
    from functions.model import CalendarPolicy

    if not _CREDENTIALS.match(args.credentials):
        raise CliError(USAGE, "invalid_argument",
                       f"--credentials must be dwd, bearer or oauth:ID, not {args.credentials!r}")
    needs = QUEUE + (("CALSYNC_CREDENTIAL_KEYS",) if args.refresh_token_stdin else ())
    settings = load_settings(needs, QUEUE_OPTIONS + CALENDAR_OPTIONS)
    credentials_ref, vault, stored = args.credentials, None, None
    if args.refresh_token_stdin:
        vault = app.credential_vault(settings)
        credentials_ref = stored = vault.store_refresh_token(_read_refresh_token())
    given = args.calendars is not None or args.min_access_role is not None or args.exclude
    policy = CalendarPolicy(calendars=args.calendars or "all",
                            min_access_role=args.min_access_role or "reader",
                            exclude=tuple(args.exclude or ())) if given else None
    service = app.account_service(settings)
    try:
        result = service.connect(args.owner, credentials_ref, policy)
    except BaseException:
        if stored:
            service.discard_unused(stored)  # not when the account switched to it already
        raise
    account = result.account
    what = "connected" if result.created else "already connected"
    follow = ("the listing of its calendars is queued" if result.queued else
              "its listing is recorded; the renewer's sweep queues it within minutes")
    output.result({"account_id": account.id, "created": result.created,
                   "queued": result.queued, "credentials_ref": account.credentials_ref,
                   "policy": account.policy.to_json()},
                  f"{what}: {account.id} follows the calendars of {account.owner} "
                  f"({account.credentials_ref}); {follow}")
    return OK


def cmd_disconnect(args: argparse.Namespace, output: Output) -> int:
    """Mark the account `deleting` and queue the task that stops its channel and deletes
    its subscriptions and its credential (the renewer finishes it if the task is lost)."""
    from functions import app

    settings = load_settings(FIRESTORE, QUEUE[1:] + QUEUE_OPTIONS + CALENDAR_OPTIONS)
    queued = app.account_service(settings).delete(args.account_id)
    then = ("a task deletes its subscriptions" if queued else
            "the renewer deletes its subscriptions (the task could not be queued)")
    output.result({"account_id": args.account_id, "queued": queued},
                  f"disconnecting {args.account_id}: {then}")
    return OK


COLUMNS = ("id", "owner", "status", "calendars", "channel", "expires", "last list sync",
           "pending", "error")


def _row(status: Any) -> list[str]:
    error = status.last_error or status.renewal_error or "-"
    return [status.id, status.owner, status.status, str(status.calendars_followed),
            status.channel_state or "-", _when(status.channel_expiration),
            _when(status.last_listed_at), str(status.pending_requests), error[:60]]


def cmd_accounts(args: argparse.Namespace, output: Output) -> int:
    """Every account: id, owner, status, calendars followed."""
    statuses = list(_reader().every_status())
    output.result(
        {"accounts": [{"id": s.id, "owner": s.owner, "status": s.status,
                       "calendars_followed": s.calendars_followed} for s in statuses]},
        _table([[s.id, s.owner, s.status, str(s.calendars_followed)] for s in statuses],
               ("id", "owner", "status", "calendars")))
    return OK


def cmd_account_status(args: argparse.Namespace, output: Output) -> int:
    """Status and health of one account or all."""
    service = _reader()
    statuses = ([service.status(args.account_id)] if args.account_id
                else list(service.every_status()))
    output.result({"accounts": [s.to_json() for s in statuses]},
                  _table([_row(s) for s in statuses], COLUMNS))
    return OK


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the account commands to the CLI."""
    connect = add_command(
        commands, common, "connect-account", "follow every calendar of an account",
        "Connect the account of --owner (or find it) and queue the listing of its calendars: "
        "every calendar its policy chooses is subscribed, a calendar shared with it later is "
        "followed, one that leaves its list is unsubscribed (feed kept for the retention "
        "period). Connecting again replaces the credentials for every subscription of the "
        "account and, when given, the policy.")
    connect.add_argument("--owner", required=True, metavar="EMAIL",
                         help="the account whose calendar list calsync follows")
    connect.add_argument("--credentials", default="dwd", metavar="REF",
                         help="dwd (the default), oauth:ID (a stored refresh token) or bearer "
                              "(local emulator only)")
    connect.add_argument("--refresh-token-stdin", action="store_true",
                         help="read the owner's OAuth refresh token from standard input and "
                              "store it sealed; needs CALSYNC_CREDENTIAL_KEYS")
    connect.add_argument("--calendars", choices=("all", "owned"),
                         help="all readable calendars (the default) or only owned ones")
    connect.add_argument("--min-access-role", choices=_ROLES,
                         help="follow a calendar only while the owner's role is at least this")
    connect.add_argument("--exclude", action="append", metavar="CALENDAR_ID",
                         help="a calendar never followed (repeatable)")
    connect.set_defaults(handler=cmd_connect)

    disconnect = add_command(
        commands, common, "disconnect-account", "stop following an account and delete it",
        "Mark the account `deleting` and queue the task that stops its calendar-list "
        "channel and deletes every subscription it follows, its stored credentials and the "
        "account. Cannot be undone.")
    disconnect.add_argument("account_id", metavar="ACCOUNT_ID", help="the account (see "
                                                                      "`accounts`)")
    disconnect.set_defaults(handler=cmd_disconnect)

    listing = add_command(commands, common, "accounts", "list every account",
                          "One line per account: id, owner, status, calendars followed.")
    listing.set_defaults(handler=cmd_accounts)

    status = add_command(
        commands, common, "account-status", "an account's status and health",
        "Show the status, calendars followed, calendar-list channel and expiry, last list "
        "sync, pending requests and last error of one account, or of all.")
    status.add_argument("account_id", nargs="?", metavar="ACCOUNT_ID",
                        help="the account (default: every account)")
    status.set_defaults(handler=cmd_account_status)


__all__ = ["register"]
