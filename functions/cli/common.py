"""What every CLI command shares: the variables each kind of work reads, settings
holding only those, argument types, and a subcommand's parser with the exit codes."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from functions.cli.output import EXIT_CODES

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


def names_list(allowed: tuple[str, ...] | None = None) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [n for n in names if allowed is not None and n not in allowed]
        if not names or unknown:
            raise argparse.ArgumentTypeError(
                f"want a comma-separated list{' of ' + ', '.join(allowed) if allowed else ''}")
        return names

    return parse


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
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


class UsageError(Exception):
    """Bad arguments (exit 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def add_command(commands: Any, common: argparse.ArgumentParser, name: str, summary: str,
                description: str) -> argparse.ArgumentParser:
    """A subcommand with the shared options, its description and the exit codes."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=textwrap.fill(description, 78), epilog=EXIT_CODES,
        parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser
