"""Operator commands on subscriptions: subscribe, unsubscribe, pause, resume, list,
status, resync, renew.

Each prints a readable line or table, or one JSON object with `--json`; the
exit statuses are in `functions.cli.output`.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from functions.cli.common import (
    CALENDAR_OPTIONS,
    FIRESTORE,
    QUEUE,
    QUEUE_OPTIONS,
    add_command,
    load_settings,
)
from functions.cli.output import FAILED, OK, USAGE, CliError, Output
from functions.errors import SubscriptionNotFound

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_CREDENTIALS = re.compile(r"^(dwd|bearer|oauth:[A-Za-z0-9_-]{1,128})$")
MAX_LABELS = 64


def _service(settings: Any) -> Any:
    from functions import app

    return app.subscription_service(settings)


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    ago = f"{abs(seconds):.0f}s" if abs(seconds) < 120 else f"{abs(seconds) / 60:.0f}m"
    return f"{value.strftime('%Y-%m-%d %H:%M:%S')} ({ago} {'ago' if seconds >= 0 else 'from now'})"


# -- subscribe -------------------------------------------------------------------


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise CliError(USAGE, "invalid_argument",
                           f"label {pair!r} must be KEY=VALUE: a key of lower-case letters, "
                           "digits, _ or - starting with a letter, a value of the same "
                           "characters (at most 63 each)")
        labels[key] = value
    if len(labels) > MAX_LABELS:
        raise CliError(USAGE, "invalid_argument", f"at most {MAX_LABELS} labels")
    return labels


def _read_refresh_token() -> str:
    if sys.stdin.isatty():
        token = getpass.getpass("refresh token (not echoed): ")
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise CliError(USAGE, "invalid_argument", "no refresh token on standard input")
    return token


def _subscribe_result(result: Any) -> tuple[Any, bool, bool]:
    """(subscription, created, queued) from `SubscriptionService.subscribe`."""
    return result.subscription, bool(result.created), bool(result.queued)


def cmd_subscribe(args: argparse.Namespace, output: Output) -> int:
    """Create (or find) the subscription of a calendar and queue its first sync."""
    if not _CREDENTIALS.match(args.credentials):
        raise CliError(USAGE, "invalid_argument",
                       f"--credentials must be dwd, bearer or oauth:ID, not {args.credentials!r}")
    labels = _labels(args.label or [])
    needs = QUEUE + (("CALSYNC_CREDENTIAL_KEYS",) if args.refresh_token_stdin else ())
    settings = load_settings(needs, QUEUE_OPTIONS + CALENDAR_OPTIONS)
    credentials_ref, vault, stored = args.credentials, None, None
    if args.refresh_token_stdin:
        from functions import app

        token = _read_refresh_token()
        vault = app.credential_vault(settings)
        credentials_ref = stored = vault.store_refresh_token(token)
    extra = {"labels": labels} if labels else {}
    try:
        result = _service(settings).subscribe(args.calendar_id, args.owner, credentials_ref,
                                              **extra)
    except BaseException:
        if vault is not None and stored:
            vault.delete(stored.split(":", 1)[1])
        raise
    sub, created, queued = _subscribe_result(result)
    if vault is not None and stored and sub.credentials_ref != stored:
        vault.delete(stored.split(":", 1)[1])  # it existed with its own credentials
    what = "subscribed" if created else "already subscribed"
    follow = ("its initial sync is queued" if queued else
              "its initial sync is not queued yet: the renewer's sweep queues it within a "
              "few minutes")
    output.result(
        {"subscription_id": sub.id, "created": created, "queued": queued,
         "credentials_ref": sub.credentials_ref},
        f"{what}: {sub.id} watches calendar {sub.calendar_id} as {sub.owner} "
        f"({sub.credentials_ref}); {follow}")
    return OK


# -- lifecycle -------------------------------------------------------------------


# Read when set: with a topic, the CLI publishes the deletion message itself.
PUBLISH_OPTIONS = ("CALSYNC_PUBSUB_TOPIC", "CALSYNC_PUBLISH_TIMEOUT_SECONDS",
                   "CALSYNC_PUBLISH_MAX_MESSAGES", "CALSYNC_PUBLISH_MAX_BYTES",
                   "CALSYNC_PUBLISH_RETRY_SECONDS")


def cmd_unsubscribe(args: argparse.Namespace, output: Output) -> int:
    """Stop the channels and delete everything stored for the subscription, once its
    `subscription_deleted` message (and anything unpublished before it) is out."""
    settings = load_settings(FIRESTORE, QUEUE[1:] + QUEUE_OPTIONS + CALENDAR_OPTIONS
                             + PUBLISH_OPTIONS)
    service = _service(settings)
    sub_id = args.subscription_id
    # With the topic here, the CLI publishes the message itself (no task queued for
    # the worker, which would race it to finish the deletion).
    publishes = bool(settings.pubsub_topic)
    result = service.unsubscribe(sub_id, queue_publication=not publishes)
    finished_elsewhere = False
    if result is None and publishes:
        # Publish what waits here and now (bounded by the publish timeout), then
        # finish; if that did not get it out, the worker does (a task is queued).
        from functions import app

        app.sync_engine(settings).publish_pending(sub_id)
        try:
            result = service.unsubscribe(sub_id)
        except SubscriptionNotFound:  # a run already in flight published and finished
            finished_elsewhere = True
    payload: dict[str, Any] = {"subscription_id": sub_id}
    text = f"unsubscribed {sub_id}"
    if isinstance(result, int):
        payload["deleted_documents"] = result
        text += f": {result} documents deleted"
    elif finished_elsewhere:
        text += ": the worker finished the deletion"
    else:
        payload["status"] = "deleting"
        text = (f"deleting {args.subscription_id}: its deletion message waits to be "
                "published; the worker finishes the deletion once it is (see `status`)")
    output.result(payload, text)
    return OK


def cmd_pause(args: argparse.Namespace, output: Output) -> int:
    """Stop the channels; keep the data and the feed."""
    settings = load_settings(FIRESTORE, QUEUE[1:] + QUEUE_OPTIONS + CALENDAR_OPTIONS)
    _service(settings).pause(args.subscription_id)
    output.result({"subscription_id": args.subscription_id, "status": "paused"},
                  f"paused {args.subscription_id}: no notifications until `resume`")
    return OK


def cmd_resume(args: argparse.Namespace, output: Output) -> int:
    """Make the subscription active again and queue a sync."""
    settings = load_settings(QUEUE, QUEUE_OPTIONS + CALENDAR_OPTIONS)
    _service(settings).resume(args.subscription_id)
    output.result({"subscription_id": args.subscription_id, "status": "active"},
                  f"resumed {args.subscription_id}: a sync is queued")
    return OK


# -- list and status -------------------------------------------------------------

STATUS_COLUMNS = ("id", "status", "channel", "expires", "last notification", "last sync",
                  "complete as of", "lag", "pending", "seq", "error")


def _status_row(status: Any) -> list[str]:
    error = status.last_error or status.renewal_error or "-"
    return [status.id, status.status, status.channel_id or "-", _when(status.channel_expiration),
            _when(status.last_notification_at), _when(status.last_synced_at),
            _when(status.complete_as_of),
            "-" if status.lag_seconds is None else f"{status.lag_seconds:.0f}s",
            str(status.pending_requests), str(status.change_seq), error[:60]]


def _table(rows: list[list[str]], columns: tuple[str, ...]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in rows]
    return "\n".join(lines)


def _reader() -> Any:
    """The subscription service for reading status: Firestore only, no credentials needed
    against the emulator (no Calendar or Cloud Tasks client is built)."""
    from functions import app

    return app.subscription_reader(load_settings(FIRESTORE))


def cmd_status(args: argparse.Namespace, output: Output) -> int:
    """State, channel, lag and errors of one subscription or all."""
    service = _reader()
    statuses = ([service.status(args.subscription_id)] if args.subscription_id
                else service.list_status())
    output.result({"subscriptions": [s.to_json() for s in statuses]},
                  _table([_status_row(s) for s in statuses], STATUS_COLUMNS))
    return OK


def cmd_list(args: argparse.Namespace, output: Output) -> int:
    """Every subscription: id, calendar, owner, status."""
    statuses = _reader().list_status()
    output.result(
        {"subscriptions": [{"id": s.id, "calendar_id": s.calendar_id, "owner": s.owner,
                            "status": s.status} for s in statuses]},
        _table([[s.id, s.calendar_id, s.owner, s.status] for s in statuses],
               ("id", "calendar", "owner", "status")))
    return OK


# -- resync and renew -------------------------------------------------------------


def cmd_resync(args: argparse.Namespace, output: Output) -> int:
    """Queue a sync (a full one with --full) and wait for it to finish."""
    from functions import app

    settings = load_settings(QUEUE, QUEUE_OPTIONS)
    service, store = _service(settings), app.store(settings)
    requested = service.resync(args.subscription_id, full=args.full)  # refusals: exit 1
    sub_id, target, full = args.subscription_id, requested.generation, requested.full_request
    deadline = time.monotonic() + args.timeout
    while True:
        state = store.get_writer_state(sub_id)
        seq = int(state.get("change_seq") or 0)
        if (int(state.get("synced_gen") or 0) >= target
                and int(state.get("full_resync_served") or 0) >= full
                and not state.get("lease_until")):
            break
        if time.monotonic() >= deadline:
            raise CliError(FAILED, "unavailable",
                           f"the sync of {sub_id} did not finish within {args.timeout:.0f}s; "
                           "it stays queued (see `status`)", {"timeout_s": args.timeout})
        output.progress(f"{'running' if state.get('lease_until') else 'queued'}: "
                        f"feed at cursor {seq}")
        time.sleep(0.5)
    output.result({"subscription_id": sub_id, "synced_gen": target, "change_seq": seq},
                  f"synced {sub_id}: feed at cursor {seq}")
    return OK


def cmd_renew(args: argparse.Namespace, output: Output) -> int:
    """Run the renewer once, in-process (what Cloud Scheduler triggers)."""
    from functions import app
    from functions.config import RENEWER

    report = app.renewer(app.settings(RENEWER)).run()
    data = report.to_json()
    output.result(data, ", ".join(f"{key.replace('_', ' ')} {value}"
                                  for key, value in data.items()))
    return OK


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from err
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the subscription commands to the CLI."""
    def add(name: str, summary: str, description: str, handler: Any,
            with_id: bool = True) -> argparse.ArgumentParser:
        parser = add_command(commands, common, name, summary, description)
        if with_id:
            parser.add_argument("subscription_id", metavar="SUBSCRIPTION_ID",
                            help="the subscription (see `list`)")
        parser.set_defaults(handler=handler)
        return parser

    sub = add("subscribe", "watch a calendar and sync it into a change feed",
              "Create the subscription of CALENDAR_ID for --owner and queue its initial "
              "sync; the sync worker opens the watch channel. Subscribing the same calendar "
              "and owner again returns the existing subscription.", cmd_subscribe,
              with_id=False)
    sub.add_argument("calendar_id", metavar="CALENDAR_ID",
                     help="the calendar's id, or `primary` for the owner's own")
    sub.add_argument("--owner", required=True, metavar="EMAIL",
                     help="the account whose access calsync uses to read the calendar")
    sub.add_argument("--credentials", default="dwd", metavar="REF",
                     help="how calsync acts as the owner: dwd (domain-wide delegation, the "
                          "default), oauth:ID (a stored refresh token) or bearer (local "
                          "emulator only)")
    sub.add_argument("--refresh-token-stdin", action="store_true",
                     help="read the owner's OAuth refresh token from standard input (a "
                          "prompt without echo on a terminal) and store it sealed; needs "
                          "CALSYNC_CREDENTIAL_KEYS")
    sub.add_argument("--label", action="append", metavar="KEY=VALUE",
                     help="a label to find the subscription by (repeatable)")
    add("unsubscribe", "stop watching and delete everything stored",
        "Stop the subscription's channels and delete its events, feed and stored "
        "credentials, once its subscription_deleted message is published (with "
        "CALSYNC_PUBSUB_TOPIC set the CLI publishes it; otherwise the worker does and "
        "then finishes the deletion). Cannot be undone.", cmd_unsubscribe)
    add("pause", "stop notifications; keep the data",
        "Stop the subscription's channels. Events and the feed stay readable; "
        "`resume` catches up on every change made meanwhile.", cmd_pause)
    add("resume", "restart a paused subscription",
        "Make a paused (or failed) subscription active again and queue a sync; the "
        "worker opens a new channel.", cmd_resume)
    add("list", "list every subscription", "One line per subscription: id, calendar, "
        "owner, status.", cmd_list, with_id=False)
    status = add("status", "state, channel, lag and errors",
                 "Show the status, channel, last notification, last sync, the watermark "
                 "(complete as of: every change made before it is in the feed), lag, "
                 "pending requests, feed cursor and last error of one subscription, or "
                 "of all.",
                 cmd_status, with_id=False)
    status.add_argument("subscription_id", nargs="?", metavar="SUBSCRIPTION_ID",
                        help="the subscription (default: every subscription)")
    resync = add("resync", "sync now and wait for it",
                 "Queue a sync of the subscription and wait until it has finished, showing "
                 "progress on a terminal.", cmd_resync)
    resync.add_argument("--full", action="store_true",
                        help="list the whole calendar again instead of the changes since the "
                             "last sync (repairs drift; the feed only gets real changes)")
    resync.add_argument("--timeout", type=_positive, default=1800.0, metavar="SECONDS",
                        help="give up waiting after this long (default 1800); the sync "
                             "stays queued")
    add("renew", "run the channel renewer once",
        "Renew expiring channels, retry failed ones, re-queue stalled requests and queue "
        "safety-net syncs, as the scheduled renewer does. Needs the renewer's settings.",
        cmd_renew, with_id=False)


__all__ = ["register"]
