"""The one exception tree. `TransientError` is worth a retry; everything else fails now."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

# errnos that describe a condition that may clear on its own (network filesystems, busy disks).
_TRANSIENT_ERRNOS = frozenset(
    {errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED, errno.EAGAIN, errno.EBUSY, errno.EIO}
)
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class SharemigError(Exception):
    """Root of every error sharemig raises on purpose."""

    retriable: bool = False


class TransientError(SharemigError):
    """A failure that may pass on its own (I/O timeout, connection reset, lock contention)."""

    retriable = True


class WorkerSetupError(TransientError):
    """A copy batch landed on a worker that cannot run it (a pool path it does not see, another
    database): worth a retry, on another worker. `worker` names the one to avoid."""

    def __init__(self, message: str, worker: str) -> None:
        super().__init__(message)
        self.worker = worker

    def __reduce__(self) -> tuple[type[WorkerSetupError], tuple[str, str]]:
        # Raised on a Dask worker and pickled back to the copy that submitted the batch.
        return (type(self), (str(self), self.worker))


class PermanentError(SharemigError):
    """A failure a retry will not fix; the migration ends in `migration_error`."""


class InvalidInputError(PermanentError):
    """Bad input from a caller: a type, a value or a file that does not validate."""


class InventoryError(InvalidInputError):
    """The pool inventory file is unreadable or invalid; the message names line and field."""


class NotFoundError(PermanentError):
    """A share, pool, type, network, snapshot or migration that does not exist."""


class InvalidStateError(PermanentError):
    """The object exists but is in a state that does not allow the operation."""


class ConflictError(PermanentError):
    """The operation conflicts with the object's contents (e.g. snapshots with forced host copy)."""


class CapacityError(PermanentError):
    """No pool can hold the share (type, size or free space)."""


class FreezeUnavailableError(PermanentError):
    """The pool cannot freeze an instance here (no CAP_SYS_ADMIN, no mount); the migration
    goes on unfrozen and relies on its final sync, and says so in its log."""


class UnreadableSourceError(PermanentError):
    """Source entries the mover may not read (permissions): their data would not be
    migrated, so the migration must not reach the switchover; the message counts them."""


class IncompleteCopyError(PermanentError):
    """Manifest entries are still unverified: the destination must not become the share."""


class DataIntegrityError(PermanentError):
    """A file did not verify after the bounded number of re-copies."""


class LeaseLostError(PermanentError):
    """Another run took the migration over (this one stalled past its lease): stop, touch
    nothing."""


class CancelledError(SharemigError):
    """The migration was cancelled while work was running; not a failure."""


def is_retriable(exc: BaseException) -> bool:
    """True when `exc` belongs to the retriable branch (used by Prefect retry conditions)."""
    return isinstance(exc, SharemigError) and exc.retriable


@contextmanager
def classified_os_errors(what: str) -> Iterator[None]:
    """Turn an `OSError` into `TransientError`, `CapacityError` or `PermanentError`.

    The message names what failed and where, so a caller (API client, operator) can act on it
    instead of reading a bare errno.
    """
    try:
        yield
    except SharemigError:
        raise
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        text = f"{what} failed: {exc.strerror or exc}{where}"
        if exc.errno in _TRANSIENT_ERRNOS or isinstance(exc, TimeoutError | ConnectionError):
            raise TransientError(text) from exc
        if exc.errno in _FULL_ERRNOS:
            raise CapacityError(f"{text}; free space on the pool or choose another") from exc
        raise PermanentError(text) from exc


class RollbackRefusedError(InvalidInputError):
    """`sharemig rollback` cannot run now (no retained instance, window closed, share busy);
    nothing was changed."""
