"""Operator commands: subscribe, unsubscribe, pause, resume, list, status, resync, renew.

Each prints a readable table or line by default and one JSON object with
`--json`; exit 0 on success, 1 when the service refused or failed, 2 for bad
arguments (argparse), 3 when the subscription does not exist.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

NOT_FOUND = 3


def _service() -> Any:
    from functions import app

    return app.subscription_service(app.cli_settings())


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    ago = f"{abs(seconds):.0f}s" if abs(seconds) < 120 else f"{abs(seconds) / 60:.0f}m"
    return f"{value.strftime('%Y-%m-%d %H:%M:%S')} ({ago} {'ago' if seconds >= 0 else 'from now'})"


def _emit(args: argparse.Namespace, out: TextIO, payload: dict[str, Any], text: str) -> None:
    if args.json:
        out.write(json.dumps(payload, default=str) + "\n")
    else:
        out.write(text + "\n")


def _not_found(sub_id: str) -> int:
    print(f"error: no subscription {sub_id!r}", file=sys.stderr)
    return NOT_FOUND


def cmd_subscribe(args: argparse.Namespace, out: TextIO, _: Callable[[], Any]) -> int:
    service = _service()
    credentials_ref = args.credentials
    if args.refresh_token_stdin:
        from functions import app
        from functions.credentials import CredentialVault

        settings = app.cli_settings()
        token = sys.stdin.readline().strip()
        if not token:
            print("error: no refresh token on standard input", file=sys.stderr)
            return 2
        vault = CredentialVault(app.firestore_client(settings), settings.credential_keys)
        credentials_ref = vault.store_refresh_token(token)
    result = service.subscribe(args.calendar_id, args.owner, credentials_ref)
    sub = result.subscription
    if not result.created:
        text = f"already subscribed: {sub.id} ({sub.status})"
    elif result.queued:
        text = (f"subscribed {sub.id}: calendar {args.calendar_id} as {args.owner}; the first "
                "sync is queued and opens the watch channel")
    else:
        text = (f"subscribed {sub.id}: calendar {args.calendar_id} as {args.owner}; the first "
                "sync could not be queued now: the renewer's sweep queues it within minutes")
    _emit(args, out, {"subscription_id": sub.id, "created": result.created,
                      "queued": result.queued, "credentials_ref": sub.credentials_ref}, text)
    return 0


def cmd_unsubscribe(args: argparse.Namespace, out: TextIO, _: Callable[[], Any]) -> int:
    from functions.subscriptions import SubscriptionNotFound

    try:
        deleted = _service().unsubscribe(args.subscription_id)
    except SubscriptionNotFound:
        return _not_found(args.subscription_id)
    _emit(args, out, {"subscription_id": args.subscription_id, "deleted_documents": deleted},
          f"unsubscribed {args.subscription_id}: {deleted} documents deleted")
    return 0


def _simple(action: str) -> Callable[[argparse.Namespace, TextIO, Callable[[], Any]], int]:
    def command(args: argparse.Namespace, out: TextIO, _: Callable[[], Any]) -> int:
        from functions.subscriptions import SubscriptionNotFound

        try:
            result = getattr(_service(), action)(args.subscription_id)
        except SubscriptionNotFound:
            return _not_found(args.subscription_id)
        payload: dict[str, Any] = {"subscription_id": args.subscription_id, "action": action}
        if result is not None and hasattr(result, "channel_id"):
            payload["channel_id"] = result.channel_id
        _emit(args, out, payload, f"{action.rstrip('e')}ed {args.subscription_id}")
        return 0

    return command


STATUS_COLUMNS = ("id", "status", "channel", "expires", "last notification", "last sync",
                  "lag", "pending", "seq", "error")


def _status_row(status: Any) -> list[str]:
    error = status.last_error or status.renewal_error or "-"
    return [status.id, status.status, status.channel_id or "-", _when(status.channel_expiration),
            _when(status.last_notification_at), _when(status.last_synced_at),
            "-" if status.lag_seconds is None else f"{status.lag_seconds:.0f}s",
            str(status.pending_requests), str(status.change_seq), error[:60]]


def _table(rows: list[list[str]], columns: tuple[str, ...]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace, out: TextIO, _: Callable[[], Any]) -> int:
    from functions.subscriptions import SubscriptionNotFound

    service = _service()
    try:
        statuses = ([service.status(args.subscription_id)] if args.subscription_id
                    else service.list_status())
    except SubscriptionNotFound:
        return _not_found(args.subscription_id)
    if args.json:
        out.write(json.dumps({"subscriptions": [s.to_json() for s in statuses]}) + "\n")
    else:
        out.write(_table([_status_row(s) for s in statuses], STATUS_COLUMNS) + "\n")
    return 0


def cmd_list(args: argparse.Namespace, out: TextIO, _: Callable[[], Any]) -> int:
    statuses = _service().list_status()
    if args.json:
        out.write(json.dumps({"subscriptions": [
            {"id": s.id, "calendar_id": s.calendar_id, "owner": s.owner, "status": s.status}
            for s in statuses]}) + "\n")
    else:
        rows = [[s.id, s.calendar_id, s.owner, s.status] for s in statuses]
        out.write(_table(rows, ("id", "calendar", "owner", "status")) + "\n")
    return 0


def cmd_resync(args: argparse.Namespace, out: TextIO, _: Callable[[], Any]) -> int:
    """Queue a sync (a full one with --full) and follow it to completion."""
    from functions import app

    settings = app.cli_settings()
    service, store = _service(), app.store(settings)
    if store.get_subscription(args.subscription_id) is None:
        return _not_found(args.subscription_id)
    full = store.request_full_resync(args.subscription_id) if args.full else 0
    if not service.request_sync(args.subscription_id, origin="resync"):
        # A request was already pending: make sure a task serves it now.
        service.requeue(args.subscription_id,
                        store.get_subscription(args.subscription_id).requested_gen,
                        origin=f"resync{int(time.time())}")
    target = store.get_subscription(args.subscription_id).requested_gen
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = store.get_writer_state(args.subscription_id)
        if (int(state.get("synced_gen") or 0) >= target
                and int(state.get("full_resync_served") or 0) >= full
                and not state.get("lease_until")):
            break
        if not args.json:
            seq = int(state.get("change_seq") or 0)
            running = "running" if state.get("lease_until") else "queued"
            out.write(f"\r  {running}: feed at seq {seq} ")
            out.flush()
        time.sleep(0.5)
    else:
        print(f"\nerror: sync not finished within {args.timeout:.0f}s", file=sys.stderr)
        return 1
    state = store.get_writer_state(args.subscription_id)
    _emit(args, out, {"subscription_id": args.subscription_id, "synced_gen": target,
                      "change_seq": int(state.get("change_seq") or 0)},
          f"\rsynced {args.subscription_id}: feed at seq {int(state.get('change_seq') or 0)}")
    return 0


def cmd_renew(args: argparse.Namespace, out: TextIO, _: Callable[[], Any]) -> int:
    """Run the renewer once, in-process (what Cloud Scheduler triggers)."""
    from functions import app
    from functions.config import RENEWER

    report = app.renewer(app.settings(RENEWER)).run()
    _emit(args, out, report.to_json(),
          f"renewed {report.renewed}, failed {report.failed}, orphans stopped "
          f"{report.orphans_stopped}, abandoned {report.abandoned}, swept {report.swept}, "
          f"safety-net syncs {report.safety_net}")
    return 0


def register(commands: Any) -> None:
    """Add every operator command to the CLI's subparsers."""
    def add(name: str, help_text: str, handler: Any, with_id: bool = True) -> Any:
        parser = commands.add_parser(name, help=help_text)
        if with_id:
            parser.add_argument("subscription_id")
        parser.add_argument("--json", action="store_true", help="one JSON object")
        parser.set_defaults(handler=handler)
        return parser

    sub = add("subscribe", "watch a calendar and sync it", cmd_subscribe, with_id=False)
    sub.add_argument("calendar_id")
    sub.add_argument("--owner", required=True, help="account the credentials act as")
    sub.add_argument("--credentials", default="dwd",
                     help="dwd (domain-wide delegation, default) or oauth:<id>")
    sub.add_argument("--refresh-token-stdin", action="store_true",
                     help="read the owner's OAuth refresh token from standard input and "
                          "store it sealed")
    add("unsubscribe", "stop watching and delete everything stored", cmd_unsubscribe)
    add("pause", "stop the channel; keep the data", _simple("pause"))
    add("resume", "open a new channel and sync", _simple("resume"))
    add("list", "all subscriptions", cmd_list, with_id=False)
    status = add("status", "state, channel, lag and errors", cmd_status, with_id=False)
    status.add_argument("subscription_id", nargs="?")
    resync = add("resync", "sync now and follow progress", cmd_resync)
    resync.add_argument("--full", action="store_true", help="drop the sync token first")
    resync.add_argument("--timeout", type=float, default=1800.0)
    add("renew", "run the renewer once", cmd_renew, with_id=False)
