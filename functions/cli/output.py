"""How the operator CLI answers: results, errors, progress and exit statuses.

Results go to stdout: a readable line or table, or with `--json` exactly one
JSON object. Errors go to stderr as `error: <message>`; with `--json` the
error is instead the one JSON object on stdout, shaped like the `/v1` API's:
`{"error": {"code", "message", "details"}}`. Progress goes to stderr, and only
when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

OK = 0
FAILED = 1  # the service refused, or something failed
USAGE = 2  # bad arguments
NOT_FOUND = 3  # no such subscription (or account)
INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = f"""exit status:
  {OK}    done
  {FAILED}    refused or failed (the message says why)
  {USAGE}    bad arguments
  {NOT_FOUND}    no such subscription or account
  {INTERRUPTED}  interrupted (Ctrl-C)

with --json, stdout holds exactly one JSON object: the result, or
{{"error": {{"code": ..., "message": ..., "details": {{...}}}}}} with code one of
invalid_argument, not_found, failed_precondition, unavailable, internal."""

CODES = ("invalid_argument", "not_found", "failed_precondition", "unavailable", "internal")


@dataclass
class CliError(Exception):
    """A failure the CLI reports as one message and exit status."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


class Output:
    """Where one command writes; `json` selects the machine-readable form."""

    def __init__(self, json_mode: bool, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.json = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._progress_shown = False

    def result(self, payload: dict[str, Any], text: str) -> None:
        """The command's answer: `payload` under --json, else `text`."""
        self.end_progress()
        if self.json:
            self.out.write(json.dumps(payload, default=str) + "\n")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def error(self, failure: CliError) -> int:
        """Report a failure; returns its exit status."""
        self.end_progress()
        if self.json:
            self.out.write(json.dumps({"error": {
                "code": failure.code, "message": failure.message, "details": failure.details,
            }}, default=str) + "\n")
            self.out.flush()
        else:
            self.err.write(f"error: {failure.message}\n")
            self.err.flush()
        return failure.status

    def warn(self, text: str) -> None:
        """A note for the person at the terminal (never under --json)."""
        if not self.json:
            self.end_progress()
            self.err.write(text + "\n")

    def progress(self, text: str) -> None:
        """One overwritten status line on stderr, only if stderr is a terminal."""
        if self.json or not _is_terminal(self.err):
            return
        self.err.write("\r\033[K" + text)
        self.err.flush()
        self._progress_shown = True

    def end_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\r\033[K")
            self.err.flush()
            self._progress_shown = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
