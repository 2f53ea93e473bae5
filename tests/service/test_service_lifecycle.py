"""When the backend starts, stops and dies: lazy loading, exit on closed stdin or a dead parent, SIGKILL and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from service_helpers import EVENT_TIMEOUT_S, LONG_JOB_STEPS, TINY_ARGS, RawBackend, check_result_arrays, service_argv

from hymotion.shared.errors import HyMotionError


def test_hello_comes_before_the_model_loads_and_closing_stdin_stops_the_backend(backend_env) -> None:
    backend = RawBackend(service_argv("--stdio", *TINY_ARGS), backend_env)
    hello = backend.next_event()
    assert hello.TYPE == "hello"
    assert Path(hello.log_file).parent == Path(backend_env["HYMOTION_CACHE"]) / "logs"
    backend.send(b'{"type": "status", "id": "s"}\n')
    status = backend.next_event()
    assert (status.state, status.loaded, status.queue) == ("idle", False, [])
    assert backend.close(timeout=EVENT_TIMEOUT_S) == 0
    assert "stopping: stdin closed" in Path(hello.log_file).read_text()


def test_the_backend_exits_when_its_parent_dies(backend_env) -> None:
    """The parent is killed while the backend's stdin stays open: only the parent watch can stop it."""
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    launcher = f"""
import subprocess, sys
backend = subprocess.Popen({service_argv("--stdio", *TINY_ARGS)!r}, stdin={stdin_read}, stdout={stdout_write},
                           stderr=subprocess.DEVNULL, pass_fds=({stdin_read}, {stdout_write}))
print(backend.pid, flush=True)
sys.stdin.read()
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=backend_env,
        pass_fds=(stdin_read, stdout_write),
    )
    assert parent.stdin and parent.stdout
    os.close(stdin_read)
    os.close(stdout_write)
    with os.fdopen(stdout_read, "rb") as backend_stdout:
        backend_pid = int(parent.stdout.readline())
        assert b'"hello"' in backend_stdout.readline()
        parent.kill()
        parent.wait()
        parent.stdin.close()
        parent.stdout.close()
        ended = threading.Event()

        def read_to_the_end() -> None:
            backend_stdout.read()
            ended.set()

        threading.Thread(target=read_to_the_end, daemon=True).start()
        if not ended.wait(EVENT_TIMEOUT_S):
            os.kill(backend_pid, signal.SIGKILL)
            pytest.fail("the backend outlived its parent")
    os.close(stdin_write)


def test_a_killed_backend_is_reported_earlier_results_stay_and_restart_works(client_module, backend_env) -> None:
    client = client_module.BackendClient(
        sys.executable, client_module.service_args(model="tiny-random", device="cpu"), env=backend_env
    )
    first_pid = client.start(timeout=EVENT_TIMEOUT_S).pid
    finished = client.submit_generate(["a person waves"], durations=[1.0], steps=2)
    earlier = [e for e in client.iter_events(finished, timeout=EVENT_TIMEOUT_S) if e.TYPE == "result"]

    doomed = client.submit_generate(["a person runs"], durations=[1.0], steps=LONG_JOB_STEPS)
    for event in client.iter_events(doomed, timeout=EVENT_TIMEOUT_S):
        if event.TYPE == "progress" and event.stage == "sampling" and client.alive:
            os.kill(first_pid, signal.SIGKILL)
    assert (event.TYPE, event.code, event.exit_code) == ("error", "backend_died", -signal.SIGKILL)
    assert any("serving" in line for line in event.stderr_tail)
    died = [e for e in client.poll_events() if e.TYPE == "error" and e.job is None]
    assert [(e.code, e.exit_code) for e in died] == [("backend_died", -signal.SIGKILL)]
    assert "SIGKILL" in died[0].message
    # the next Generate restarts the backend by itself: the hint says so instead of asking for a manual restart
    assert died[0].hint.startswith("Generate again: the backend restarts by itself.") and event.hint == died[0].hint
    assert not client.alive
    with pytest.raises(HyMotionError) as refused:
        client.ping()
    assert refused.value.code == "backend_died"

    check_result_arrays(earlier[0])
    assert client.restart(timeout=EVENT_TIMEOUT_S).pid not in (None, first_pid)
    assert client.ping() < 5.0
    assert client.shutdown() == 0
    assert not client.alive
