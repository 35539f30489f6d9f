"""How a failure becomes the CLI's one message and exit status: the one place the CLI
knows Google's client exceptions (DESIGN.md: only adapters, the composition root
and the API's and CLI's wiring import a Google library)."""

from __future__ import annotations

from functions.cli.output import FAILED, NOT_FOUND, CliError, one_line


def classify(err: BaseException) -> CliError:
    """The exit status, error code and one-line message for any exception."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    from functions import errors
    from functions.config import ConfigError
    from functions.errors import AccountNotFound, SealError, SubscriptionNotFound

    if isinstance(err, CliError):
        return err
    if isinstance(err, SubscriptionNotFound):
        sub_id = err.args[0] if err.args else ""
        return CliError(NOT_FOUND, "not_found", f"no subscription {sub_id!r}",
                        {"subscription_id": sub_id})
    if isinstance(err, AccountNotFound):
        account_id = err.args[0] if err.args else ""
        return CliError(NOT_FOUND, "not_found", f"no account {account_id!r}",
                        {"account_id": account_id})
    if isinstance(err, errors.InvalidTransition):
        return CliError(FAILED, "failed_precondition", one_line(str(err)),
                        {"status": err.status})
    if isinstance(err, ConfigError):
        return CliError(FAILED, "failed_precondition", one_line(str(err)),
                        {"reason": "configuration"})
    if isinstance(err, SealError):
        return CliError(FAILED, "failed_precondition",
                        f"stored credentials do not open: {one_line(str(err))}",
                        {"reason": "sealed_credentials"})
    if isinstance(err, auth_exc.DefaultCredentialsError):
        return CliError(FAILED, "failed_precondition",
                        "no Google credentials found: run `gcloud auth application-default "
                        "login`, or set GOOGLE_APPLICATION_CREDENTIALS",
                        {"reason": "credentials"})
    if isinstance(err, auth_exc.GoogleAuthError):
        return CliError(FAILED, "failed_precondition",
                        f"Google credentials were refused: {one_line(str(err))}",
                        {"reason": "credentials"})
    transient = (errors.StoreUnavailable, errors.QueueUnavailable, errors.CalendarUnavailable,
                 errors.RateLimited, errors.LeaseLost, gexc.ServiceUnavailable,
                 gexc.DeadlineExceeded, gexc.RetryError, ConnectionError, TimeoutError)
    if isinstance(err, transient):
        return CliError(FAILED, "unavailable",
                        f"{one_line(str(err)) or type(err).__name__} (retry later)",
                        {"reason": type(err).__name__})
    refused = (errors.CredentialsRejected, errors.CalendarGone, errors.Misconfigured,
               gexc.PermissionDenied, gexc.Unauthenticated, gexc.FailedPrecondition)
    if isinstance(err, refused):
        return CliError(FAILED, "failed_precondition", one_line(str(err)),
                        {"reason": type(err).__name__})
    if isinstance(err, errors.CalsyncError | gexc.GoogleAPICallError):
        return CliError(FAILED, "internal", one_line(str(err)) or type(err).__name__,
                        {"reason": type(err).__name__})
    return CliError(FAILED, "internal",
                    f"unexpected {type(err).__name__}: {one_line(str(err))}",
                    {"reason": type(err).__name__})
