"""The copy buffer is per process: a worker forked after its parent copied gets its own."""

from __future__ import annotations

import os

from storage.mover.local_copy import _thread_buffer


def test_a_forked_worker_writing_its_buffer_leaves_the_parents_alone() -> None:
    mine = _thread_buffer()
    mine[:5] = b"hello"
    pid = os.fork()
    if pid == 0:  # the worker: the same thread-local buffer object, inherited by fork
        _thread_buffer()[:5] = b"XXXXX"
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # A shared mapping would make every worker and the parent copy through one buffer.
    assert bytes(mine[:5]) == b"hello"
