"""One `btrfs send | btrfs receive`, piped through this process so it can count and stop it.

The stream's bytes are the migration's progress; `should_stop` is polled between chunks; a
stream that makes no progress for `STALL_TIMEOUT_S` is killed. A receive that did not finish
leaves a subvolume without a received UUID: it is deleted here, so a half-received subvolume
is never mistaken for a snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import subprocess
from collections.abc import Callable
from pathlib import Path

from storage.drivers import btrfs_cli
from storage.drivers.base import StopCheck
from storage.errors import CancelledError, PermanentError, TransientError

CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python 3.10+ on Linux), spelled out for older ones
STALL_TIMEOUT_S = 300.0
_STOP_POLL_S = 0.5


def received_complete(path: Path) -> bool:
    """True for a subvolume that `btrfs receive` finished: read-only with a received UUID."""
    if not btrfs_cli.is_subvolume(path):
        return False
    info = btrfs_cli.subvolume_info(path)
    return info.readonly and info.received_uuid is not None


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def send_receive(
    snapshot: Path,
    parent: Path | None,
    dest_dir: Path,
    step: str,
    *,
    on_bytes: Callable[[int], None],
    should_stop: StopCheck | None = None,
) -> int:
    """Send `snapshot` (incrementally from `parent`) into `dest_dir`; the stream's size.

    Afterwards `dest_dir / snapshot.name` is a complete received subvolume, or absent and an
    error says which `step` failed.
    """
    target = dest_dir / snapshot.name
    if received_complete(target):
        return 0
    btrfs_cli.delete_subvolume(target)  # a half-received leftover of a killed run
    dest_dir.mkdir(parents=True, exist_ok=True)
    send_cmd = ["btrfs", "send", "-q", *(["-p", str(parent)] if parent else []), str(snapshot)]
    sender = subprocess.Popen(send_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    receiver = subprocess.Popen(
        ["btrfs", "receive", str(dest_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert sender.stdout is not None and receiver.stdin is not None
    for pipe in (sender.stdout, receiver.stdin):
        # 1 MiB pipes instead of 64 KiB: a sixteenth of the reads, writes and stop polls.
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, CHUNK)
    sent = 0
    ok = False
    try:
        out, into = sender.stdout.fileno(), receiver.stdin.fileno()
        idle = 0.0
        while True:
            if should_stop is not None and should_stop():
                raise CancelledError(f"{step}: stopped on request")
            ready, _, _ = select.select([out], [], [], _STOP_POLL_S)
            if not ready:
                idle += _STOP_POLL_S
                if idle >= STALL_TIMEOUT_S:
                    raise TransientError(f"{step}: no data from btrfs send for {idle:g}s")
                continue
            idle = 0.0
            data = os.read(out, CHUNK)
            if not data:
                break
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(into, view) :]
            except BrokenPipeError:
                sender.kill()  # the receiver died (its exit status and stderr say why)
                break
            sent += len(data)
            on_bytes(len(data))
        receiver.stdin.close()
        receiver.wait(timeout=btrfs_cli.COMMAND_TIMEOUT_S)
        sender.wait(timeout=btrfs_cli.COMMAND_TIMEOUT_S)
        for name, proc in (("btrfs receive", receiver), ("btrfs send", sender)):
            if proc.returncode != 0:
                assert proc.stderr is not None
                message = proc.stderr.read().decode(errors="replace")
                raise btrfs_cli.step_error(f"{step} ({name})", message or f"exit {proc.returncode}")
        if not received_complete(target):
            raise PermanentError(f"{step}: btrfs receive ended without a complete {target}")
        btrfs_cli.restore_root_times(target, snapshot)
        ok = True
    except subprocess.TimeoutExpired:
        raise TransientError(f"{step}: btrfs send/receive did not exit") from None
    finally:
        if not ok:
            _stop(sender, receiver)
            btrfs_cli.delete_subvolume(target)
        for stream in (sender.stdout, sender.stderr, receiver.stdin, receiver.stderr):
            if stream is not None and not stream.closed:
                stream.close()
    return sent
