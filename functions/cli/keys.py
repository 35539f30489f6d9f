"""`rotate-keys`: re-seal stored refresh tokens under the current credential key and
report which channel-token and credential key ids are still in use."""

from __future__ import annotations

import argparse
import os
from typing import Any

from functions.cli.common import FIRESTORE, add_command, load_settings
from functions.cli.output import FAILED, OK, Output


def _channel_key_ids(args: argparse.Namespace) -> list[str] | None:
    """Configured channel-token key ids: --channel-key-ids, else the variable's ids."""
    if args.channel_key_ids:
        return [k.strip() for k in args.channel_key_ids.split(",") if k.strip()]
    raw = os.environ.get("CALSYNC_CHANNEL_TOKEN_KEYS", "")
    ids = [part.split(":", 1)[0].strip() for part in raw.split(",") if ":" in part]
    return ids or None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counts.items())) or "none"


def cmd_rotate_keys(args: argparse.Namespace, output: Output) -> int:
    """Re-seal refresh tokens under the current key; report key ids in use."""
    from functions import app
    from functions.lifecycle.rotation import rotate

    settings = load_settings(FIRESTORE + ("CALSYNC_CREDENTIAL_KEYS",))
    report = rotate(app.key_usage(settings), list(settings.credential_keys),
                    _channel_key_ids(args), dry_run=args.dry_run)
    creds, channels = report.credential_keys, report.channel_keys
    verb = "would re-seal" if args.dry_run else "re-sealed"
    lines = [
        f"refresh tokens: {verb} {creds.resealed} under current key {creds.current}; "
        f"sealed by key: {_counts(creds.sealed_by)}",
        "credential keys removable now: " + (", ".join(creds.removable) or "none"),
    ]
    lines += [f"  cannot open credentials {u.credential_id} (key {u.key_id}): {u.reason}"
              for u in creds.unopenable]
    lines.append(f"delivering channels by token key: {_counts(channels.in_use)}"
                 + (f", unknown {channels.unknown}" if channels.unknown else ""))
    if channels.removable is None:
        lines.append("channel-token keys removable now: pass --channel-key-ids to tell")
    elif channels.unknown:
        lines.append(f"channel-token keys removable now: none until the {channels.unknown} "
                     "channels of unknown key are replaced (within the channel lifetime)")
    else:
        lines.append("channel-token keys removable now: "
                     + (", ".join(channels.removable) or "none"))
    output.result(report.to_json(), "\n".join(lines))
    return FAILED if creds.unopenable else OK


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `rotate-keys` to the CLI."""
    parser = add_command(
        commands, common, "rotate-keys", "re-seal refresh tokens; report key ids in use",
        "Re-seal every stored refresh token under the current (first) key of "
        "CALSYNC_CREDENTIAL_KEYS, then report which credential keys and which "
        "channel-token keys are still in use and which old ones can be removed. Run it "
        "after the new keys are current in every function. Needs only "
        "GOOGLE_CLOUD_PROJECT and CALSYNC_CREDENTIAL_KEYS. Exits 1 if a stored token "
        "cannot be opened with the configured keys (the report lists it).")
    parser.add_argument("--dry-run", action="store_true",
                        help="only report: re-seal nothing")
    parser.add_argument("--channel-key-ids", metavar="ID,ID",
                        help="the configured channel-token key ids, current first (default: "
                             "the ids in CALSYNC_CHANNEL_TOKEN_KEYS if set; the keys "
                             "themselves are never needed)")
    parser.set_defaults(handler=cmd_rotate_keys)
