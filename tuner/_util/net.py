"""Ports on this machine."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port free now (another process may take it before the caller binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
