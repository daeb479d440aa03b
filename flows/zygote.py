"""Warm flow-run starts: a process that has imported Prefect and the flows, and forks runs.

`python -m flows.zygote serve SOCKET` is started by `sharemig up` beside each worker. A
launcher (`flows/warm_launch.py`, the deployments' command) sends it the run's
environment, working directory and stdio; the zygote forks a child that becomes that
process (same env, cwd and fds) and runs Prefect's own engine (`prefect.engine` as
`__main__`), so the run pays neither the interpreter start nor the imports (~3 s on a
loaded 2-CPU host). The zygote keeps no threads and no event loop (it refuses to start if
an import left one) and reports each child's exit status to its launcher; when the
launcher dies, the child is killed. `python -m flows.zygote cold REASON` is the
launcher's fallback: the plain engine in this process, after a warning in the run's log.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from uuid import UUID

from flows.warm_launch import HEADER, read_line, send_request

PRELOAD = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.flows",
    "prefect.deployments.steps",
    "prefect._internal.metrics",
    "prefect.logging.handlers",
    "prefect.client.orchestration",
)
"""What the engine imports lazily for every run, besides the deployments' flow modules."""
_PR_SET_PDEATHSIG = 1
REQUEST_S = 5.0


def preload() -> None:
    """Import what every run needs and take on the environment the deployments give their
    runs, so a child rebuilds Prefect's settings only when its run's differ (~1 s under load).
    Fails if that left a thread: fork copies no thread but the caller's."""
    from flows.deploy import load_project

    deployments = load_project().deployments
    for name in [*PRELOAD, *(d.entrypoint.rsplit(".", 1)[0] for d in deployments)]:
        importlib.import_module(name)
    envs = [d.work_pool.job_variables.get("env") or {} for d in deployments]
    if envs and all(e == envs[0] for e in envs):
        adopt_environment({**os.environ, **{k: str(v) for k, v in envs[0].items()}})
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        raise SystemExit(f"zygote: importing the flows started threads {threads}; cannot fork")


def _prefect_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The variables Prefect's settings read (PREFECT__* are per-run values, not settings)."""
    return {
        k: v for k, v in env.items() if k.startswith("PREFECT_") and not k.startswith("PREFECT__")
    }


def run_engine(argv: list[str], note: str | None = None) -> None:
    """Prefect's `python -m prefect.engine`, in this process, with this process's env."""
    if note:
        _warn_in_run_log(note)
    sys.argv = ["prefect.engine", *argv]
    with warnings.catch_warnings():  # imported already, on purpose: runpy's warning says so
        warnings.filterwarnings("ignore", "'prefect.engine' found in sys.modules", RuntimeWarning)
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def adopt_environment(env: dict[str, str]) -> None:
    """Make `env` this process's environment, and Prefect's settings and logging follow.

    Prefect reads both at import, here with the zygote's environment; a run's may differ.
    """
    import logging

    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging
    from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

    same = _prefect_settings(env) == _prefect_settings(os.environ)
    os.environ.clear()
    os.environ.update(env)
    if same:
        return
    extra = logging.getLogger("prefect.extra").handlers
    for name in PREFECT_LOGGING_EXTRA_LOGGERS.value():  # setup_logging would add them twice
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if h in extra]:
            logger.removeHandler(handler)
    refresh_global_settings_context()
    setup_logging(incremental=False)


def _warn_in_run_log(note: str) -> None:
    from prefect.flow_engine import load_flow_run
    from prefect.logging.loggers import flow_run_logger

    try:
        run = load_flow_run(UUID(os.environ["PREFECT__FLOW_RUN_ID"]))
        flow_run_logger(run).warning(note)
    except Exception as exc:  # the run itself reports the API failing; this is a note
        print(f"{note} (not in the run's log: {exc})", file=sys.stderr)


class Zygote:
    """The accept/fork/reap loop; `serve` returns only in a forked child (its work)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self.runs: dict[int, socket.socket] = {}
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_r, self.wake_w = os.pipe()

    def serve(self) -> Callable[[], None]:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.listener.bind(str(self.path))
        self.path.chmod(0o600)
        self.listener.listen(16)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda _s, _f: None)
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        gc.freeze()  # children share the imported modules' pages instead of copying them
        _say(f"zygote {self.pid} ready on {self.path}")
        while True:
            for key, _ in self.sel.select():
                if key.fileobj is self.listener:
                    job = self._accept()
                    if job is not None:
                        return job
                elif key.fileobj == self.wake_r:
                    os.read(self.wake_r, 4096)
                    self._reap()
                else:
                    self._launcher_gone(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> Callable[[], None] | None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            conn.settimeout(REQUEST_S)
            uid = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)[4:8]
            if int.from_bytes(uid, sys.byteorder) != os.getuid():
                raise OSError("a launcher of another user")
            header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
            (size,) = HEADER.unpack(header)
            body = bytearray()
            while len(body) < size:
                chunk = conn.recv(size - len(body))
                if not chunk:
                    raise OSError("request cut short")
                body += chunk
            request = json.loads(body)
            if request.get("ping"):
                conn.sendall(b"pong\n")
                conn.close()
                return None
            if len(fds) != 3:
                raise OSError(f"expected 3 fds, got {len(fds)}")
        except (OSError, ValueError) as exc:
            _say(f"bad request: {exc}")
            for fd in fds:
                os.close(fd)
            conn.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:  # closing the connection sends the launcher to a cold start
            _say(f"cannot fork: {exc}")
            for fd in fds:
                os.close(fd)
            conn.close()
            return None
        if pid == 0:
            return self._become_child(conn, fds, request)
        for fd in fds:
            os.close(fd)
        conn.sendall(f"pid {pid}\n".encode())
        self.runs[pid] = conn
        self.sel.register(conn, selectors.EVENT_READ, pid)
        _say(f"run {request['env'].get('PREFECT__FLOW_RUN_ID')} is pid {pid}")
        return None

    def _become_child(
        self, conn: socket.socket, fds: list[int], request: dict[str, object]
    ) -> Callable[[], None]:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != self.pid:  # the zygote died before prctl took effect
            os._exit(1)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.sel.close()
        self.listener.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for other in self.runs.values():
            other.close()
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        cwd = str(request["cwd"])
        os.chdir(cwd)
        env = request["env"]
        assert isinstance(env, dict)
        adopt_environment({str(k): str(v) for k, v in env.items()})
        from storage.settings import reset_settings

        reset_settings()  # sharemig's own, should an import have read them in the zygote
        sys.path[0] = cwd  # as `python -m` started in the launcher's directory has it
        argv = request.get("argv") or []
        assert isinstance(argv, list)
        return lambda: run_engine([str(a) for a in argv])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.runs.pop(pid, None)
            if conn is None:
                continue
            with contextlib.suppress(KeyError):  # already, when the launcher went first
                self.sel.unregister(conn)
            with contextlib.suppress(OSError):
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()

    def _launcher_gone(self, conn: socket.socket) -> None:
        """Readable means EOF: the launcher (the process the worker watches) died."""
        pid = next(p for p, c in self.runs.items() if c is conn)
        with contextlib.suppress(OSError):
            if conn.recv(1):
                return
        _say(f"the launcher of pid {pid} died; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.sel.unregister(conn)


def _say(message: str) -> None:
    """One line of the zygote's log, timed like the worker's (to read a start's steps)."""
    now = time.time()
    print(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} {message}")
    sys.stdout.flush()


def socket_path(home: Path, worker: int) -> Path:
    """Where worker `worker`'s zygote listens: under the data dir, else (a socket path holds
    108 bytes) in a private directory under /tmp named after the data dir."""
    path = home / "zygote" / f"worker-{worker}.sock"
    if len(os.fsencode(path)) > 100:
        digest = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"sharemig-{os.getuid()}-{digest}" / path.name
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def ping(path: Path, timeout: float = 2.0) -> bool:
    """The zygote at `path` answers (used by `sharemig up` to wait until it is ready)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            send_request(sock, {"ping": True}, [])
            return read_line(sock) == "pong"
    except OSError:
        return False


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "serve":
        preload()
        job = Zygote(Path(argv[1])).serve()
        job()  # in a forked child: the run, then a normal interpreter exit (atexit, threads)
    elif len(argv) >= 2 and argv[0] == "cold":
        run_engine(argv[2:], note=f"started cold: {argv[1]}")
    else:
        raise SystemExit("usage: python -m flows.zygote serve SOCKET | cold REASON")


if __name__ == "__main__":
    main(sys.argv[1:])
