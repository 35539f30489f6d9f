"""What every benchmark shares: its command line (`--smoke`, `--stack-env`), clean
shutdown on SIGTERM, and the local stack, started here or reused from a stack.env.

Light on imports on purpose: a bench that only needs the options pays nothing more.

    parser = argparse.ArgumentParser()
    add_bench_args(parser)          # --smoke, --stack-env PATH
    args = parse(parser)            # also turns SIGTERM into SystemExit (finally blocks run)
    with local_stack(args.stack_env, "calsync-bench") as env:   # a dict like stack.env
        ...
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def add_bench_args(parser: argparse.ArgumentParser, stack: bool = True) -> None:
    """`--smoke`, and unless `stack` is False (a bench needing no emulator it could
    share), `--stack-env PATH`."""
    parser.add_argument(
        "--smoke", action="store_true",
        help="tiny sizes, a few seconds, the same code path: proves the bench still runs "
             "(`make test` runs every bench this way); its figures are not meaningful")
    if stack:
        parser.add_argument(
            "--stack-env", type=Path, default=None, metavar="PATH",
            help="reuse the running local stack described by this stack.env (written by "
                 "infra.local / tests' local_stack) instead of starting emulators")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the options; from here on SIGTERM unwinds like Ctrl-C, stopping what we started."""
    args = parser.parse_args(argv)
    if getattr(args, "stack_env", None) is not None and not args.stack_env.is_file():
        parser.error(f"--stack-env {args.stack_env}: no such file")
    signal.signal(signal.SIGTERM, _terminate)
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def read_stack_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as infra.local.stack writes them."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not line.lstrip().startswith("#"):
            env[key.strip()] = value
    missing = {"FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"} - env.keys()
    if missing:
        raise SystemExit(f"{path}: not a stack.env (missing {', '.join(sorted(missing))})")
    return env


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """`env` applied to os.environ for the block, the previous environment restored after."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def local_stack(stack_env: Path | None, project: str,
                extra_env: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """The whole local stack's environment, applied to os.environ for the block.

    With `stack_env`, the stack it describes (left running; `extra_env` cannot apply
    to functions already started). Otherwise a fresh stack in a temporary run
    directory, stopped on exit.
    """
    if stack_env is not None:
        env = read_stack_env(stack_env)
        print(f"reusing the local stack of {stack_env}", flush=True)
        with environment(env):
            yield env
        return

    from infra.local.stack import Stack, StackConfig

    with tempfile.TemporaryDirectory(prefix="calsync-bench-stack-") as tmp:
        stack = Stack(StackConfig(run_dir=Path(tmp), project=project,
                                  extra_function_env=dict(extra_env or {})))
        try:
            started = time.perf_counter()
            env = stack.start()
            print(f"local stack up in {time.perf_counter() - started:.1f}s", flush=True)
            with environment(env):
                yield env
        finally:
            stack.stop()
