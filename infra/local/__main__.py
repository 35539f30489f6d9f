"""`python -m infra.local up`: run the local stack in the foreground until a signal."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from infra.local.stack import Stack, StackConfig, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole local stack until Ctrl-C")
    up.add_argument("--run-dir", type=Path, default=StackConfig().run_dir)
    up.add_argument("--firestore-port", type=int, default=0)
    up.add_argument("--tasks-port", type=int, default=0)
    up.add_argument("--calendar-port", type=int, default=0)
    up.add_argument("--webhook-port", type=int, default=0)
    up.add_argument("--worker-port", type=int, default=0)
    up.add_argument("--renewer-port", type=int, default=0)
    up.add_argument("--api-port", type=int, default=0)
    args = parser.parse_args(argv)

    config = StackConfig(
        run_dir=args.run_dir.resolve(),
        firestore_port=args.firestore_port,
        tasks_port=args.tasks_port,
        calendar_port=args.calendar_port,
        function_ports={"webhook": args.webhook_port, "sync_worker": args.worker_port,
                        "renew_channels": args.renewer_port, "api": args.api_port},
    )
    stack = Stack(config)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start(progress=True)
        if stopping.is_set():
            return 0
        print(f"[stack] environment written to {config.run_dir / 'stack.env'}")
        print(f"[stack] logs in {config.run_dir}")
        print("ready", flush=True)
        while not stopping.wait(0.5):
            for process in stack.processes:
                code = process.exited()
                if code is not None:
                    print(f"[stack] {process.name} exited with status {code}; stopping. "
                          f"Log tail:\n{process.log_tail()}", file=sys.stderr)
                    return 1
        return 0
    except StackError as err:
        print(f"[stack] error: {err}", file=sys.stderr)
        return 1
    finally:
        print("[stack] stopping", flush=True)
        stack.stop()
        print("[stack] stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
