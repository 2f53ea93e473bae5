"""`--listen`: the same protocol over loopback TCP, one token per server, no other addresses unless asked."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from service_helpers import EVENT_TIMEOUT_S, TINY_ARGS, RawBackend, check_result_arrays, service_argv

from hymotion.shared.errors import HyMotionError
from hymotion.shared.protocol import ErrorEvent, decode_event


@pytest.mark.parametrize("address", ["0.0.0.0:0", "192.0.2.1:8765"])
def test_listen_refuses_a_non_loopback_address_unless_allowed(backend_env, address: str) -> None:
    finished = subprocess.run(
        service_argv("--listen", address, *TINY_ARGS), env=backend_env, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2
    assert "--allow-remote" in finished.stderr and finished.stdout == ""


def test_tcp_clients_need_the_token_and_then_get_the_whole_protocol(client_module, backend_env, tmp_path) -> None:
    token_file = tmp_path / "token"
    argv = service_argv("--listen", "127.0.0.1:0", "--token-file", str(token_file), *TINY_ARGS)
    server = RawBackend(argv, backend_env)
    try:
        port = int(server.wait_for_stderr(lambda line: "listening on 127.0.0.1:" in line).rsplit(":", 1)[1])
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32

        with pytest.raises(HyMotionError) as refused:
            client_module.RemoteBackendClient("127.0.0.1", port, "not-the-token").start(timeout=EVENT_TIMEOUT_S)
        assert refused.value.code == "bad_request" and "token" in refused.value.hint

        with socket.create_connection(("127.0.0.1", port), timeout=EVENT_TIMEOUT_S) as raw:
            raw.sendall(b'{"type": "ping", "id": "1"}\n')
            replies = raw.makefile("rb").readlines()
        (answer,) = map(decode_event, replies)  # then it hangs up
        assert isinstance(answer, ErrorEvent) and answer.field == "token"

        remote = client_module.RemoteBackendClient("127.0.0.1", port, token)
        assert remote.start(timeout=EVENT_TIMEOUT_S).pid == server.process.pid
        assert remote.ping() < 5.0
        job = remote.submit_generate(["a person waves"], durations=[1.0], steps=2)
        events = list(remote.iter_events(job, timeout=EVENT_TIMEOUT_S))
        assert [e.TYPE for e in events if e.TYPE != "progress"] == ["queued", "result", "done"]
        check_result_arrays(next(e for e in events if e.TYPE == "result"))
        remote.shutdown()
        assert not remote.alive
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.close() == 0
    assert server.events.get_nowait() is None, "in TCP mode nothing at all goes to stdout"
    assert Path(token_file).exists()
