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
NOT_FOUND = 3  # no such subscription
INTERRUPTED = 130  # Ctrl-C

EXIT_CODES = f"""exit status:
  {OK}    done
  {FAILED}    refused or failed (the message says why)
  {USAGE}    bad arguments
  {NOT_FOUND}    no such subscription
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


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def classify(err: BaseException) -> CliError:
    """The exit status, error code and one-line message for any exception."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    from functions import errors
    from functions.adapters.google.credentials import SealError
    from functions.config import ConfigError
    from functions.lifecycle.subscriptions import SubscriptionNotFound

    if isinstance(err, CliError):
        return err
    if isinstance(err, SubscriptionNotFound):
        sub_id = err.args[0] if err.args else ""
        return CliError(NOT_FOUND, "not_found", f"no subscription {sub_id!r}",
                        {"subscription_id": sub_id})
    if isinstance(err, errors.InvalidTransition):
        return CliError(FAILED, "failed_precondition", _one_line(str(err)),
                        {"status": err.status})
    if isinstance(err, ConfigError):
        return CliError(FAILED, "failed_precondition", _one_line(str(err)),
                        {"reason": "configuration"})
    if isinstance(err, SealError):
        return CliError(FAILED, "failed_precondition",
                        f"stored credentials do not open: {_one_line(str(err))}",
                        {"reason": "sealed_credentials"})
    if isinstance(err, auth_exc.DefaultCredentialsError):
        return CliError(FAILED, "failed_precondition",
                        "no Google credentials found: run `gcloud auth application-default "
                        "login`, or set GOOGLE_APPLICATION_CREDENTIALS",
                        {"reason": "credentials"})
    if isinstance(err, auth_exc.GoogleAuthError):
        return CliError(FAILED, "failed_precondition",
                        f"Google credentials were refused: {_one_line(str(err))}",
                        {"reason": "credentials"})
    transient = (errors.StoreUnavailable, errors.QueueUnavailable, errors.CalendarUnavailable,
                 errors.RateLimited, errors.LeaseLost, gexc.ServiceUnavailable,
                 gexc.DeadlineExceeded, gexc.RetryError, ConnectionError, TimeoutError)
    if isinstance(err, transient):
        return CliError(FAILED, "unavailable",
                        f"{_one_line(str(err)) or type(err).__name__} (retry later)",
                        {"reason": type(err).__name__})
    refused = (errors.CredentialsRejected, errors.CalendarGone, errors.Misconfigured,
               gexc.PermissionDenied, gexc.Unauthenticated, gexc.FailedPrecondition)
    if isinstance(err, refused):
        return CliError(FAILED, "failed_precondition", _one_line(str(err)),
                        {"reason": type(err).__name__})
    if isinstance(err, errors.CalsyncError | gexc.GoogleAPICallError):
        return CliError(FAILED, "internal", _one_line(str(err)) or type(err).__name__,
                        {"reason": type(err).__name__})
    return CliError(FAILED, "internal",
                    f"unexpected {type(err).__name__}: {_one_line(str(err))}",
                    {"reason": type(err).__name__})
