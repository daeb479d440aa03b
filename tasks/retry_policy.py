"""When a task is retried: only for `TransientError` (storage.errors.is_retriable), with backoff."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from storage.errors import is_retriable

RETRIES = 3
RETRY_DELAYS = exponential_backoff(backoff_factor=2)(RETRIES)  # 2 s, 4 s, 8 s
RETRY_JITTER = 0.2


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O timeouts and connection resets; validation and permanent errors fail now."""
    try:
        state.result()
    except BaseException as exc:  # the task's own exception, re-raised by result()
        return is_retriable(exc)
    return False
