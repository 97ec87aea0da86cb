"""The OAuth callback port: 1717 unless it is busy, checked by binding it before anything is written."""

from __future__ import annotations

import errno
import socket

from runbook.errors import InputError

DEFAULT_PORT = 1717
AUTO_SCAN = range(1717, 1817)


def port_is_free(port: int) -> bool:
    """True when ``port`` can be bound on localhost now (what the CLI's redirect server needs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as servers do (Node, so the CLI's redirect server): closed connections in TIME_WAIT do not make a
        # port busy; a socket listening on it still does (Linux refuses the bind then, SO_REUSEADDR or not)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port() -> int:
    """The first free port from 1717 upwards (so the callback URL stays recognisable)."""
    for port in AUTO_SCAN:
        if port_is_free(port):
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_callback_port(callback_port: int | str) -> int:
    """A usable callback port from the parameter: a number in 1–65535 that is free, or "auto"."""
    if callback_port == "auto":
        return free_port()
    if isinstance(callback_port, bool) or not isinstance(callback_port, int | str):
        raise InputError("callback_port", callback_port, 'give a port number like 1717, or "auto"')
    try:
        port = int(callback_port)
    except ValueError:
        raise InputError("callback_port", callback_port, 'give a port number like 1717, or "auto"') from None
    if not 1 <= port <= 65535:
        raise InputError("callback_port", callback_port, 'use a port between 1 and 65535, or "auto"')
    if not port_is_free(port):
        raise InputError("callback_port", port, f'another process listens on port {port}: stop it, '
                         f'set callback_port={free_port()} (free now), or callback_port="auto"',
                         problem="the port is busy")
    return port
