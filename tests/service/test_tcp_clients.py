"""TCP clients that misbehave: one that stops reading stalls nobody and is dropped with a reason, a login trickled
byte by byte still ends at the deadline, connections are capped, short tokens and remote addresses are called out.

The server runs in this process (``serve_tcp`` on a loopback socket) with a stand-in pipeline that makes clips
instantly, so the tests control sizes and deadlines exactly; the last two tests start the real command.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import threading
import time
import types
from typing import Any, Iterator

import pytest
from service_helpers import TINY_ARGS, AnyEvent, InstantPipeline, service_argv

from hymotion.service import ServeOptions, Service, connection, tcp
from hymotion.service.tcp import MAX_CONNECTIONS, serve_tcp
from hymotion.shared.errors import HyMotionError
from hymotion.shared.protocol import ErrorEvent, decode_event

TOKEN = "a-test-token-of-32-characters-xx"
REPLY_TIMEOUT_S = 30.0
# Answers to a reading client come in milliseconds; 5 s is far past that and far below the 15-60 s stalls of the bug.
STALL_BOUND_S = 5.0
CAP_RETRIES = 50
# A login on loopback takes milliseconds; 2 s is far past that and far below the 10 s a silent client may wait.
LOGIN_BOUND_S = 2.0
SMALL_QUEUE_BYTES = 1 << 20
# Twelve-second clips are about 250 KB on the wire each: 200 of them are 50 MB, far past the 1 MiB queue bound plus
# what the kernel buffers of a client that reads nothing can hold.
FLOOD: dict[str, Any] = {"prompts": ["a person walks"], "durations": [12.0], "seeds": list(range(200)), "steps": 1}


@pytest.fixture
def server(monkeypatch) -> Iterator[int]:
    """A TCP service in this process; yields its port."""
    monkeypatch.setitem(
        sys.modules, "hymotion.pipeline.loading", types.SimpleNamespace(load_pipeline=lambda **_: InstantPipeline())
    )
    monkeypatch.setattr(connection, "MAX_PENDING_BYTES", SMALL_QUEUE_BYTES)
    service = Service(ServeOptions(model="tiny-random", device="cpu"))
    service.start()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    thread = threading.Thread(target=serve_tcp, args=(service, listener, TOKEN), daemon=True)
    thread.start()
    yield port
    service.request_stop("test over")
    thread.join(REPLY_TIMEOUT_S)
    assert service.stop()
    service.close_connections(timeout=1.0)


class Client:
    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.socket = socket.socket()
        if receive_buffer:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.socket.settimeout(REPLY_TIMEOUT_S)
        self.socket.connect(("127.0.0.1", port))
        self.lines = self.socket.makefile("rb")

    def send(self, message: dict) -> None:
        self.socket.sendall(json.dumps(message).encode() + b"\n")

    def next(self) -> AnyEvent:
        line = self.lines.readline()
        assert line, "the server hung up"
        return decode_event(line)

    def login(self) -> AnyEvent:
        self.send({"type": "auth", "token": TOKEN})
        return self.next()

    def rest(self) -> list[bytes]:
        """Every line until the server hangs up."""
        return self.lines.readlines()

    def close(self) -> None:
        self.lines.close()
        self.socket.close()


def test_a_client_that_stops_reading_stalls_no_one_and_is_dropped_with_a_reason(server) -> None:
    stalled = Client(server, receive_buffer=4096)
    assert stalled.login().TYPE == "hello"
    stalled.send({"type": "generate", "id": "flood", **FLOOD})

    other = Client(server)
    assert other.login().TYPE == "hello"
    other.socket.settimeout(STALL_BOUND_S)
    other.send({"type": "status", "id": "s"})
    assert other.next().TYPE == "status"
    other.send({"type": "generate", "id": "small", "prompts": ["a person waves"], "durations": [1.0], "steps": 1})
    events = [other.next()]
    while events[-1].TYPE not in ("done", "error"):
        events.append(other.next())
    assert (events[0].TYPE, events[-1].TYPE) == ("queued", "done"), "the other client's job ran meanwhile"
    other.close()

    lines = stalled.rest()
    last = decode_event(lines[-1])
    assert isinstance(last, ErrorEvent) and last.code == "cancelled" and "behind" in last.message and last.hint
    results = [line for line in lines if b'"type":"result"' in line]
    assert len(results) < len(FLOOD["seeds"]), "the stalled client's job was cut short"
    stalled.close()


def test_the_login_deadline_counts_from_the_connection_not_the_last_byte(server, monkeypatch) -> None:
    monkeypatch.setattr(tcp, "AUTH_TIMEOUT_S", 1.0)
    client = Client(server)
    login = json.dumps({"type": "auth", "token": TOKEN}).encode() + b"\n"
    # One byte every 0.1 s: each arrives well inside the deadline, the whole line (~50 bytes) takes 5 s.
    gap = threading.Event()
    for byte in login:
        try:
            client.socket.sendall(bytes([byte]))
        except OSError:
            break
        gap.wait(0.1)
    lines = client.rest()
    (answer,) = map(decode_event, lines)
    assert isinstance(answer, ErrorEvent) and answer.field == "token"
    client.close()


def test_logged_in_connections_past_the_cap_are_refused_with_a_reason(server) -> None:
    clients = [Client(server) for _ in range(MAX_CONNECTIONS)]
    assert all(client.login().TYPE == "hello" for client in clients)
    extra = Client(server)
    refusal = extra.login()
    assert (refusal.TYPE, refusal.code) == ("error", "bad_request") and str(MAX_CONNECTIONS) in refusal.message
    assert extra.rest() == []
    extra.close()
    clients.pop().close()
    # The slot frees once the server has read the closed connection's end: a new client may arrive just before.
    for _ in range(CAP_RETRIES):
        freed = Client(server)
        first = freed.login()
        if first.TYPE == "hello":
            break
        freed.close()
    assert first.TYPE == "hello", "a closed connection frees its slot"
    for client in [*clients, freed]:
        client.close()


def test_clients_that_never_send_the_token_cannot_lock_out_the_token_holder(server) -> None:
    """Twice as many silent connections as there are login slots, then the real client: it logs in at once, and the
    silent ones that made room for it were told why."""
    silent = [Client(server) for _ in range(2 * tcp.MAX_PENDING_LOGINS)]
    real = Client(server)
    real.socket.settimeout(LOGIN_BOUND_S)
    started = time.monotonic()
    assert real.login().TYPE == "hello"
    assert time.monotonic() - started < LOGIN_BOUND_S
    real.send({"type": "ping", "id": "p"})
    assert real.next().TYPE == "pong"
    evicted = silent[0].rest()
    told = [(event.TYPE, event.field if isinstance(event, ErrorEvent) else None)
            for event in map(decode_event, evicted)]
    assert told == [("error", "token")]
    for client in [*silent, real]:
        client.close()


def test_the_token_file_is_never_written_through_a_link_and_is_created_anew(tmp_path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    link = tmp_path / "token"
    link.symlink_to(target)
    with pytest.raises(HyMotionError) as refused:
        tcp.write_token(link, TOKEN)
    assert refused.value.code == "bad_request" and "symbolic link" in refused.value.message and refused.value.hint
    assert target.read_text() == "keep me\n" and link.is_symlink()

    old = tmp_path / "old-token"
    old.write_text("an old token\n")
    old.chmod(0o644)
    other_name = tmp_path / "hard-link"
    other_name.hardlink_to(old)
    tcp.write_token(old, TOKEN)
    assert old.read_text() == TOKEN + "\n" and stat.S_IMODE(old.stat().st_mode) == 0o600
    assert other_name.read_text() == "an old token\n", "a new file, not the old one truncated in place"


def test_serve_refuses_a_token_file_that_is_a_link_with_exit_2(backend_env, tmp_path) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    (tmp_path / "token").symlink_to(target)
    finished = subprocess.run(
        service_argv("--listen", "127.0.0.1:0", "--token-file", str(tmp_path / "token"), *TINY_ARGS),
        env=backend_env, capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 2 and "symbolic link" in finished.stderr and "Traceback" not in finished.stderr
    assert target.read_text() == "keep me\n"


def test_a_token_shorter_than_16_characters_is_refused(backend_env) -> None:
    finished = subprocess.run(
        service_argv("--listen", "127.0.0.1:0", *TINY_ARGS), env={**backend_env, "HYMOTION_TOKEN": "short"},
        capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 2
    assert "at least 16" in finished.stderr and "hint:" in finished.stderr


def test_allow_remote_warns_and_an_address_it_cannot_bind_is_a_clear_error(backend_env) -> None:
    """192.0.2.1 (TEST-NET-1) is never an address of this machine: the warning shows, the bind fails cleanly."""
    finished = subprocess.run(
        service_argv("--listen", "192.0.2.1:0", "--allow-remote", *TINY_ARGS), env=backend_env,
        capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 2
    assert "warning: listening on 192.0.2.1" in finished.stderr and "not encrypted" in finished.stderr
    assert "cannot listen on 192.0.2.1:0" in finished.stderr and "Traceback" not in finished.stderr
