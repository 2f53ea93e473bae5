"""The add-on's client reads the backend's lines with a length limit (issue 30, point 7): a line past
MAX_EVENT_BYTES is skipped a piece at a time and stands as one unreadable line, and the next line is read as usual;
memory never holds more than one piece."""

from __future__ import annotations

import io

from hymotion_addon.core import client

LIMIT = 1000


class CountingReader(io.BytesIO):
    """Records the largest piece any one readline was allowed to return."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        assert size is not None and 0 < size <= LIMIT + 1, "every read is bounded"
        line = super().readline(size)
        self.largest = max(self.largest, len(line))
        return line


def test_a_line_past_the_limit_is_skipped_in_pieces_and_the_next_one_is_read(monkeypatch):
    monkeypatch.setattr(client, "MAX_EVENT_BYTES", LIMIT)
    reader = CountingReader(b"x" * (10 * LIMIT) + b"\n" + b'{"type":"pong","id":"1"}\n' + b"y" * (LIMIT + 5))
    assert list(client._lines(reader)) == [None, b'{"type":"pong","id":"1"}\n', None]
    assert reader.largest <= LIMIT + 1


def test_a_line_exactly_at_the_limit_is_read_whole(monkeypatch):
    monkeypatch.setattr(client, "MAX_EVENT_BYTES", LIMIT)
    line = b"z" * (LIMIT - 1) + b"\n"
    assert list(client._lines(CountingReader(line))) == [line]
