"""``python -m infra.calendar_emulator --port N [--host 127.0.0.1] [--enforce-auth] [quotas]``.

Quotas are off unless given: ``--project-quota-per-minute 10000
--user-quota-per-minute 600`` enforces Google's figures (``--project-quota-status
429`` answers 429 instead of 403 over the project limit).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from .app import Emulator
from .quotas import QuotaSettings
from .server import EmulatorHTTPServer


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m infra.calendar_emulator", description=__doc__)
    parser.add_argument(
        "--port", type=int, required=True, help="port to listen on; 0 picks a free one"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--enforce-auth", action="store_true", help="answer 401 for tokens not issued by /token"
    )
    parser.add_argument(
        "--project-quota-per-minute",
        type=_positive,
        default=None,
        help="requests per minute per project, a sliding window (Google: 10000); default off",
    )
    parser.add_argument(
        "--user-quota-per-minute",
        type=_positive,
        default=None,
        help="requests per minute per user per project (Google: 600); default off",
    )
    parser.add_argument(
        "--project-quota-status",
        type=int,
        choices=(403, 429),
        default=403,
        help="status over the project limit, reason rateLimitExceeded (default 403)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    quotas = QuotaSettings(
        project_per_minute=args.project_quota_per_minute,
        user_per_minute=args.user_quota_per_minute,
        project_status=args.project_quota_status,
    )
    app = Emulator(enforce_auth=args.enforce_auth, quotas=quotas)
    server = EmulatorHTTPServer(args.host, args.port, app)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so it cannot run on the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"calendar emulator listening on {server.base_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        app.close()
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
