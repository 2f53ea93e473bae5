"""The stdio transport: the add-on's own backend process speaks the protocol on its stdin and stdout.

Only protocol lines ever reach the real stdout: at start the protocol output is moved to a private copy of fd 1, and
fd 1 itself (plus ``sys.stdout``) is pointed at stderr, so a library's print cannot corrupt the stream. The service
stops when stdin closes or when the parent process dies.
"""

from __future__ import annotations

import os
import sys
import threading

from .connection import Connection
from .core import PARENT_POLL_S, Service
from .lines import serve_lines, wait_for_stop


def serve_stdio(service: Service, parent: int) -> None:
    """Move the protocol off fds 0/1 so that nothing but protocol lines can reach the client, then serve.

    ``parent`` is the parent pid seen at start: the backend stops as soon as it is orphaned. The worker starts after
    the hello is queued and the standard streams are routed away, so a preload's imports can print nothing into the
    protocol and never hold up the hello.
    """
    protocol_in = os.fdopen(os.dup(0), "rb")
    connection = Connection("stdio", os.fdopen(os.dup(1), "wb"))
    route_standard_streams_away()
    service.attach(connection)

    def read() -> None:
        try:
            serve_lines(service, connection, protocol_in)
        finally:
            service.request_stop("stdin closed")

    def watch_parent() -> None:
        while os.getppid() == parent:
            if service.stop_requested.wait(PARENT_POLL_S):
                return
        service.request_stop("parent process gone")

    threading.Thread(target=watch_parent, name="hymotion-parent", daemon=True).start()
    connection.send(service.hello())
    service.start()
    threading.Thread(target=read, name="hymotion-stdin", daemon=True).start()
    wait_for_stop(service)


def route_standard_streams_away() -> None:
    """fd 0 reads nothing, fd 1 and sys.stdout write to stderr: what libraries print can never pass for protocol."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
