"""Processes of a test: free ports to start servers on, and stopping them (`cli.supervisor`)."""

from __future__ import annotations

import socket

from cli.supervisor import stop_group

__all__ = ["free_port", "stop_group"]


def free_port() -> int:
    """A port free on 127.0.0.1 now (another process may take it before it is bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
