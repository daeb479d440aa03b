"""Calls to the Prefect API under one time budget: what an API request waits for Prefect.

Prefect's own client retries a 503 (its server's answer to SQLite's "database is locked")
five times with exponential backoff (2+4+8+16+32 s), each try waiting up to 60 s: one
`migration_start` could hang for minutes. (Even with PREFECT_CLIENT_MAX_RETRIES=0 it sleeps
~2 s after a 503 before giving up, so overloaded answers are turned into an exception in the
transport, below its retry loop.) Here the calls of one request share a deadline
(`SHAREMIG_PREFECT_TIMEOUT_S`, see `prefect_budget`); an overloaded server (503, 502, 504,
429) or a dropped connection is retried with short pauses until the deadline, and then
`PrefectUnavailableError` says so (the API answers 503 with `Retry-After`). A refused
connection is not retried: no server listens, and waiting would only hold the client.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

import httpx

from storage.errors import TransientError

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

T = TypeVar("T")

# Callers outside a request (the recovery pass, a flow creating its next run, the CLI) have
# no client waiting on them; they still get a bound, a longer one.
BACKGROUND_BUDGET_S = 120.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_FIRST_PAUSE_S = 0.1
_MAX_PAUSE_S = 1.0

# (deadline, the budget in seconds, when it began), all `time.monotonic()` based.
_deadline: ContextVar[tuple[float, float, float] | None] = ContextVar(
    "prefect_deadline", default=None
)


class PrefectUnavailableError(TransientError):
    """The Prefect API did not answer within the budget; worth a retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "")


@contextmanager
def prefect_budget(seconds: float | None = None, *, since: float | None = None) -> Iterator[None]:
    """Every Prefect call inside shares one deadline, `seconds` (default:
    `SHAREMIG_PREFECT_TIMEOUT_S`) after `since` (a `time.monotonic()`, default now: the API
    passes the request's arrival), or an enclosing budget's if that one ends sooner.

    Prefect gets the budget less a reserve (a tenth, at most 1 s) for what the caller does
    when Prefect did not answer: undoing a start is a transaction of its own.
    """
    if seconds is None:
        from storage.settings import get_settings

        seconds = get_settings().prefect_timeout_s
    began = time.monotonic() if since is None else since
    at = began + seconds - min(1.0, seconds / 10)
    outer = _deadline.get()
    token = _deadline.set((at, seconds, began) if outer is None or at < outer[0] else outer)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_s() -> float | None:
    """Seconds left of the current budget (None outside one)."""
    current = _deadline.get()
    return None if current is None else current[0] - time.monotonic()


def elapsed_s() -> float | None:
    """Seconds since the current budget began (for a request: since it arrived)."""
    current = _deadline.get()
    return None if current is None else time.monotonic() - current[2]


class _ServerBusy(Exception):
    """An overloaded answer (503 "database is locked", 502, 504, 429), raised in the transport
    so that Prefect's client does not sleep on it."""

    def __init__(self, status: int, url: httpx.URL) -> None:
        super().__init__(f"{status} from {url.path}")
        self.status = status


def _tls_context() -> ssl.SSLContext:
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    if PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value():
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


class _FailFastTransport(httpx.HTTPTransport):
    """Each request may take only what is left until the deadline (one call of `fn` makes
    several: a CSRF token, a lookup, the write), and overloaded answers raise."""

    def __init__(self, deadline: float) -> None:
        # A transport of our own replaces the one Prefect's client would configure: take
        # over its TLS choices (PREFECT_API_TLS_INSECURE_SKIP_VERIFY, PREFECT_API_SSL_CERT_FILE).
        super().__init__(verify=_tls_context())
        self.deadline = deadline

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        left = max(0.001, self.deadline - time.monotonic())
        request.extensions["timeout"] = {"connect": left, "read": left, "write": left, "pool": left}
        response = super().handle_request(request)
        if response.status_code in RETRY_STATUSES:
            response.close()
            raise _ServerBusy(response.status_code, request.url)
        return response


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, _ServerBusy):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in RETRY_STATUSES
    if isinstance(exc, httpx.ConnectError):
        return False  # refused / no route: nothing listens, a retry will not change that
    return isinstance(exc, httpx.TransportError)


def call_prefect(what: str, fn: Callable[[SyncPrefectClient], T]) -> T:
    """`fn(client)` with a Prefect client whose every request ends by the budget's deadline;
    retried (so `fn` must be idempotent) while the server is overloaded and time remains.

    Raises `PrefectUnavailableError` when the budget runs out or Prefect cannot be reached;
    other errors (a 404, a refused state change) propagate unchanged.
    """
    if _deadline.get() is None:
        with prefect_budget(BACKGROUND_BUDGET_S):
            return call_prefect(what, fn)
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    current = _deadline.get()
    assert current is not None
    deadline, total, _ = current
    pause, tries = _FIRST_PAUSE_S, 0
    last: BaseException | None = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0.01:
            break
        tries += 1
        try:
            # Our loop does the retrying, inside the budget; Prefect's own would not stop.
            settings = {"timeout": left, "transport": _FailFastTransport(deadline)}
            with (
                temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}),
                get_client(sync_client=True, httpx_settings=settings) as client,
            ):
                return fn(client)
        except (_ServerBusy, httpx.HTTPStatusError, httpx.TransportError) as exc:
            last = exc
            if not _retryable(exc):
                break
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, _MAX_PAUSE_S)
    why = f"{type(last).__name__}: {last}" if last is not None else "no time left"
    raise PrefectUnavailableError(
        f"the Prefect API at {api_url() or '(PREFECT_API_URL unset)'} could not {what} within "
        f"{total:g} s ({tries} tries; last: {why}); check that `sharemig up` (or `prefect "
        "server start`) is running, and see the README on Prefect under load",
        retry_after_s=max(1.0, min(total, 5.0)),
    ) from last
