"""The line loop every transport runs: read a line, answer a line too long or malformed with an error, hand the
rest to the service, and wait for the service to stop."""

from __future__ import annotations

from typing import BinaryIO

from ..shared import errors
from ..shared.protocol import (
    MAX_REQUEST_BYTES,
    ErrorEvent,
)
from .connection import Connection
from .core import PARENT_POLL_S, Service, log


def serve_lines(service: Service, connection: Connection, stream: BinaryIO) -> None:
    """Answer each complete request line of ``stream`` until EOF; a line over the size limit is skipped whole and
    refused. Every non-blank line gets exactly one answer (a reply or an error), whatever bytes it holds."""
    while True:
        line = stream.readline(MAX_REQUEST_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_REQUEST_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = stream.readline(MAX_REQUEST_BYTES)
            connection.send(_too_long_event())
            continue
        if not line.endswith(b"\n"):
            log.info("input ended inside a line; %d bytes ignored", len(line))
            return
        service.handle_line(connection, line)


def _too_long_event() -> ErrorEvent:
    return ErrorEvent(
        code=errors.BAD_REQUEST,
        message=f"A request line is longer than {MAX_REQUEST_BYTES} bytes and was skipped.",
        hint="Send one JSON object per line; split very long prompt lists into several jobs.",
    )


def wait_for_stop(service: Service) -> None:
    """Block the main thread in short waits, so that SIGTERM/SIGINT handlers get to run."""
    while not service.stop_requested.wait(PARENT_POLL_S):
        continue
