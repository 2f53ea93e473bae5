"""One client's connection: events written in order without ever blocking the service on a slow reader (a bounded
backlog, then the laggard is dropped), and a clean close."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Protocol

from ..shared import errors
from ..shared.protocol import (
    ErrorEvent,
    Event,
    encode,
)

log = logging.getLogger("hymotion.service")


class EventStream(Protocol):
    """Where a connection writes its event lines: a binary pipe or socket file, or a test's stand-in."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...

    def close(self) -> object: ...

# About 50 full-length (12 s) results: far more than a reading client ever has in flight.
MAX_PENDING_BYTES = 16 << 20


LAGGARD_GRACE_S = 10.0


CLOSE_DRAIN_S = 5.0


class Connection:
    """One client. ``send`` only queues the line; this connection's own writer thread does the write, so a thread
    that answers other clients or runs jobs never waits on a client that stopped reading.

    Past ``max_pending_bytes`` of unsent lines, a droppable client (TCP) is told why, given LAGGARD_GRACE_S to read
    that last line, and hung up on; its jobs stop. The stdio client (the only one, the add-on's reader thread) is
    never dropped: its senders wait instead (back-pressure), except ``wait=False`` sends, which are small replies
    queued under the service's lock.
    """

    def __init__(
        self,
        name: str,
        stream: EventStream,
        droppable: bool = False,
        hang_up: Callable[[], None] | None = None,
        max_pending_bytes: int | None = None,
    ) -> None:
        self.name = name
        self._stream = stream
        self._droppable = droppable
        self._hang_up = hang_up or (lambda: None)
        self._max_pending = max_pending_bytes or MAX_PENDING_BYTES
        self._outbox: collections.deque[bytes] = collections.deque()
        self._pending = 0
        self._ending = False
        self._changed = threading.Condition()
        self.closed = threading.Event()
        self._writer = threading.Thread(target=self._write_lines, name=f"hymotion-send {name}", daemon=True)
        self._writer.start()

    def send(self, event: Event, wait: bool = True) -> bool:
        """Queue one line; False if the client is gone (or was just dropped for falling behind)."""
        line = encode(event)
        with self._changed:
            if self.closed.is_set() or self._ending:
                return False
            if self._pending and self._pending + len(line) > self._max_pending:
                if self._droppable:
                    self._drop_behind()
                    return False
                if wait:
                    self._changed.wait_for(
                        lambda: self.closed.is_set() or self._pending + len(line) <= self._max_pending
                    )
                    if self.closed.is_set():
                        return False
            self._outbox.append(line)
            self._pending += len(line)
            self._changed.notify_all()
        return True

    def _drop_behind(self) -> None:
        """Called under the lock: forget what is queued, queue the reason, stop the client's jobs, hang up later."""
        unsent = self._pending
        reason = encode(ErrorEvent(
            code=errors.CANCELLED,
            message=f"This client fell {unsent} bytes of events behind, so the backend closes the connection and "
            "cancels its jobs.",
            hint="Read events as they arrive (keep a thread reading the socket), or ask for fewer results per job.",
        ))
        self._pending -= sum(map(len, self._outbox))
        self._outbox.clear()
        self._outbox.append(reason)
        self._pending += len(reason)
        self._ending = True
        self.closed.set()
        self._changed.notify_all()
        log.warning("%s: fell %d bytes behind; disconnecting it", self.name, unsent)
        timer = threading.Timer(LAGGARD_GRACE_S, self._hang_up)
        timer.daemon = True
        timer.start()

    def _write_lines(self) -> None:
        """The writer thread: one line at a time, taken off the queue first (it counts as pending until written)."""
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._outbox or self._ending)
                if not self._outbox:
                    break
                line = self._outbox.popleft()
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                log.info("%s: client gone while writing", self.name)
                with self._changed:
                    self.closed.set()
                    self._outbox.clear()
                    self._pending = 0
                    self._changed.notify_all()
                break
            with self._changed:
                self._pending -= len(line)
                self._changed.notify_all()
        try:
            self._stream.close()
        except OSError:
            pass
        self._hang_up()

    def close(self, timeout: float = CLOSE_DRAIN_S) -> None:
        """Accept no more lines, give the writer ``timeout`` seconds to deliver what is queued, then hang up."""
        with self._changed:
            self._ending = True
            self._changed.notify_all()
        self._writer.join(timeout)
        if self._writer.is_alive():
            self.closed.set()
            self._hang_up()
            self._writer.join(timeout)
