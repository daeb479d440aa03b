"""The flow-run command of sharemig's deployments: start the run warm, from a zygote.

A process worker runs this instead of `python -m prefect.engine`. It imports nothing
heavy (no Prefect): it hands its environment, working directory and stdio to the
worker's zygote (`flows/zygote.py`, started by `sharemig up` beside each worker), which
forks a pre-imported child that runs Prefect's engine. This process stays the one the
worker watches: it relays signals to the child and exits with the child's status, and the
zygote kills the child when this process dies (even by SIGKILL). When no zygote answers,
it becomes the cold start (`flows/zygote.py cold`, same pid) and the run's log says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Mapping

SOCKET_ENV = "SHAREMIG_WARM_START_SOCKET"
"""The zygote's socket; `sharemig up` sets it in each worker's environment."""
CONNECT_S = 2.0
"""How long a zygote may take to accept the request before the run starts cold instead."""
REPLY_S = 30.0
"""How long it may take to fork, once it has the request. A cold start after that is still
safe: this process's exec closes the socket, and the zygote kills a child it forked."""
RELAYED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
HEADER = struct.Struct("!I")


def send_request(sock: socket.socket, request: Mapping[str, object], fds: list[int]) -> None:
    """One request: its length and the fds in one message, then the JSON body."""
    body = json.dumps(request).encode()
    socket.send_fds(sock, [HEADER.pack(len(body))], fds)
    sock.sendall(body)


def read_line(sock: socket.socket) -> str:
    """One `\\n`-terminated reply line ('' when the zygote closed the connection)."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return ""
        data += chunk
    return data.decode().strip()


def _cold(reason: str) -> None:
    """Become the cold start in this process (same pid, environment and stdio)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "flows.zygote", "cold", reason])


def _start_warm(path: str) -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_S)
    sock.connect(path)
    request = {"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:]}
    send_request(sock, request, [0, 1, 2])
    sock.settimeout(REPLY_S)
    reply = read_line(sock)
    if not reply.startswith("pid "):
        sock.close()
        raise OSError(f"unexpected reply {reply!r}")
    sock.settimeout(None)
    return sock, int(reply.split()[1])


def main() -> None:
    pending: list[int] = []
    child: list[int] = []

    def relay(signum: int, _frame: object) -> None:
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child[0], signum)
        else:
            pending.append(signum)

    for sig in RELAYED:
        signal.signal(sig, relay)
    path = os.environ.get(SOCKET_ENV)
    if not path:
        _cold(f"no zygote for this worker ({SOCKET_ENV} is not set)")
        return
    try:
        sock, pid = _start_warm(path)
    except OSError as exc:
        _cold(f"the zygote at {path} does not answer ({exc})")
        return
    child.append(pid)
    for signum in pending:
        os.kill(pid, signum)
    reply = read_line(sock)
    if not reply.startswith("exit "):
        print(f"sharemig: the zygote at {path} went away; run {pid} was killed", file=sys.stderr)
        sys.exit(1)
    code = int(reply.split()[1])
    if code < 0:  # died by a signal: die by the same one, so the worker sees what happened
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
