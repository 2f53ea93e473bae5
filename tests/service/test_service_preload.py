"""``hymotion serve --preload``: the model loads right after start-up, on the first job's own path. Status says
``loading`` meanwhile, a generate sent during the load waits for it and sees the loading stage, a failed preload
leaves the service up (the next generate loads again and reports the error), and cancel or shutdown during the load
work.

Most tests run the service in this process with a stand-in loader that blocks until the test releases it, so "during
the load" is certain, not a race; the last ones start the real command with the tiny model.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import types
from typing import Iterator

import pytest
from service_helpers import EVENT_TIMEOUT_S, TINY_ARGS, AnyEvent, InstantPipeline, RawBackend, service_argv

from hymotion.service import Connection, ServeOptions, Service
from hymotion.shared import errors
from hymotion.shared.errors import HyMotionError
from hymotion.shared.protocol import decode_event

SERVICE_OPTIONS = ServeOptions(model="tiny-random", device="cpu", plan="cpu", cache_dir="unused", preload=True)


class EventSink:
    """The write end of a Connection: every line it gets is decoded onto a queue the test reads."""

    def __init__(self) -> None:
        self.events: queue.Queue[AnyEvent] = queue.Queue()

    def write(self, line: bytes) -> int:
        self.events.put(decode_event(line))
        return len(line)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def next(self) -> AnyEvent:
        return self.events.get(timeout=EVENT_TIMEOUT_S)

    def until(self, last) -> list[AnyEvent]:
        events = [self.next()]
        while not last(events[-1]):
            events.append(self.next())
        return events


class GatedLoader:
    """Stands in for ``hymotion.pipeline.loading.load_pipeline``: records each call and blocks it until ``release``;
    then returns an instant pipeline, or raises the next of ``failures``."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.calls: list[dict] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.failures = list(failures or [])

    def __call__(self, **options) -> InstantPipeline:
        self.calls.append(options)
        self.entered.set()
        assert self.gate.wait(EVENT_TIMEOUT_S), "the test never released the load"
        if self.failures:
            raise self.failures.pop(0)
        return InstantPipeline()


class LogWatch(logging.Handler):
    """Sets an event when the service logs a line containing ``text``: the service logs 'model loaded' and a failed
    preload only after it has left the loading state, so a test can wait for either without polling."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.lines.append(record.getMessage())
            self.changed.notify_all()

    def wait_for(self, text: str) -> str:
        with self.changed:
            assert self.changed.wait_for(lambda: any(text in line for line in self.lines), EVENT_TIMEOUT_S), self.lines
            return next(line for line in self.lines if text in line)


@pytest.fixture
def service_log() -> Iterator[LogWatch]:
    logger = logging.getLogger("hymotion.service")
    watch, level = LogWatch(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    yield watch
    logger.removeHandler(watch)
    logger.setLevel(level)


@pytest.fixture
def loader(monkeypatch) -> GatedLoader:
    gated = GatedLoader()
    monkeypatch.setitem(sys.modules, "hymotion.pipeline.loading", types.SimpleNamespace(load_pipeline=gated))
    return gated


@pytest.fixture
def service(loader, service_log) -> Iterator[tuple[Service, Connection, EventSink]]:
    """A preloading service in this process, its worker already inside the (blocked) load."""
    sink = EventSink()
    service = Service(SERVICE_OPTIONS)
    connection = Connection("test", sink)
    service.attach(connection)
    service.start()
    assert loader.entered.wait(EVENT_TIMEOUT_S)
    yield service, connection, sink
    loader.gate.set()
    service.stop()
    service.close_connections(timeout=1.0)


def ask(service: Service, connection: Connection, sink: EventSink, request: dict) -> AnyEvent:
    service.handle_line(connection, json.dumps(request).encode() + b"\n")
    return sink.next()


def test_status_says_loading_from_start_up_until_the_preload_ends(service, loader, service_log) -> None:
    service_, connection, sink = service
    during = ask(service_, connection, sink, {"type": "status", "id": "s1"})
    assert (during.state, during.loaded, during.job) == ("loading", False, None)

    loader.gate.set()
    service_log.wait_for("model loaded")
    after = ask(service_, connection, sink, {"type": "status", "id": "s2"})
    assert (after.state, after.loaded) == ("idle", True)
    assert service_._pipeline.text_encoder_prepared, "a preload readies the text encoder before it reports idle"


def test_the_preload_loads_with_the_services_options_exactly_once(service, loader) -> None:
    service_, connection, sink = service
    loader.gate.set()
    assert ask(service_, connection, sink, {"type": "generate", "id": "g", "prompts": ["a person waves"]}).TYPE == (
        "queued")
    events = sink.until(lambda event: event.TYPE in ("done", "error"))
    assert events[-1].TYPE == "done", events[-1]
    assert len(loader.calls) == 1
    assert {key: loader.calls[0][key] for key in ("model", "plan", "device", "cache_dir")} == {
        "model": "tiny-random", "plan": "cpu", "device": "cpu", "cache_dir": "unused"}


def test_a_generate_sent_during_the_preload_waits_for_it_and_sees_the_loading_stage(service, loader) -> None:
    service_, connection, sink = service
    queued = ask(service_, connection, sink, {"type": "generate", "id": "g", "prompts": ["a person waves"],
                                              "seeds": [0, 1]})
    assert (queued.TYPE, queued.position) == ("queued", 0)
    started = sink.next()
    assert (started.TYPE, started.stage, started.step) == ("progress", "loading", 0)
    status = ask(service_, connection, sink, {"type": "status", "id": "s"})
    assert (status.state, status.queue) == ("loading", ["g"])

    loader.gate.set()
    events = sink.until(lambda event: event.TYPE in ("done", "error"))

    assert (events[0].TYPE, events[0].stage, events[0].step) == ("progress", "loading", 1)
    assert [event.seed for event in events if event.TYPE == "result"] == [0, 1]
    assert events[-1].TYPE == "done" and events[-1].results == 2
    assert len(loader.calls) == 1


def test_a_failed_preload_keeps_the_service_up_and_the_next_generate_loads_again_and_reports_why(
    service, loader, service_log
) -> None:
    service_, connection, sink = service
    missing = HyMotionError(errors.WEIGHTS_MISSING, "No HY-Motion-1.0-Lite weights in /nowhere.",
                            errors.DEFAULT_HINTS[errors.WEIGHTS_MISSING])
    loader.failures = [missing, missing]
    loader.gate.set()
    logged = service_log.wait_for("preloading the model failed")
    assert "weights_missing" in logged and missing.message in logged

    status = ask(service_, connection, sink, {"type": "status", "id": "s"})
    assert (status.state, status.loaded) == ("idle", False)
    ask(service_, connection, sink, {"type": "generate", "id": "g", "prompts": ["a person waves"]})
    events = sink.until(lambda event: event.TYPE in ("done", "error"))

    assert len(loader.calls) == 2
    error = events[-1]
    assert (error.TYPE, error.job, error.code) == ("error", "g", errors.WEIGHTS_MISSING)
    assert error.message == missing.message and error.hint == missing.hint


def test_a_generate_queued_behind_the_preload_can_be_cancelled(service, loader) -> None:
    service_, connection, sink = service
    ask(service_, connection, sink, {"type": "generate", "id": "g", "prompts": ["a person waves"]})
    assert sink.next().stage == "loading"
    ack = ask(service_, connection, sink, {"type": "cancel", "id": "c", "job": "g"})
    cancelled = sink.next()
    assert ack.TYPE == "ack" and (cancelled.TYPE, cancelled.job, cancelled.code) == ("error", "g", errors.CANCELLED)

    loader.gate.set()
    assert ask(service_, connection, sink, {"type": "ping", "id": "p"}).TYPE == "pong"
    service_.stop()
    assert sink.events.empty(), "the cancelled job must not run once the model is ready"


def test_stopping_during_the_preload_does_not_wait_for_the_load(service, loader) -> None:
    """The load cannot be interrupted and a stopping backend has no use for it: stop returns at once (False: the
    worker is still busy), so the process can exit instead of holding the user up for the rest of the load."""
    service_, connection, sink = service
    ask(service_, connection, sink, {"type": "generate", "id": "g", "prompts": ["a person waves"]})
    sink.next()
    assert service_.stop(timeout=EVENT_TIMEOUT_S) is False
    assert not loader.gate.is_set()
    cancelled = sink.next()
    assert (cancelled.TYPE, cancelled.job, cancelled.code) == ("error", "g", errors.CANCELLED)


# --- the real command -----------------------------------------------------------------------------------------------


def test_the_real_backend_preloads_the_tiny_model_and_the_first_generate_needs_no_load(backend_env) -> None:
    backend = RawBackend(service_argv("--stdio", "--preload", *TINY_ARGS), backend_env)
    try:
        assert backend.next_event().TYPE == "hello"
        backend.send(b'{"type": "status", "id": "s1"}\n')
        assert backend.next_event().state == "loading"
        backend.wait_for_stderr(lambda line: "model loaded" in line)
        backend.send(b'{"type": "status", "id": "s2"}\n')
        status = backend.next_event()
        assert (status.state, status.loaded) == ("idle", True)

        backend.send(b'{"type": "generate", "id": "g", "prompts": ["a person waves"], "durations": [1.0], '
                     b'"steps": 2}\n')
        events = backend.events_until(lambda event: event.TYPE in ("done", "error"))
        assert events[-1].TYPE == "done", events[-1]
        assert not [event for event in events if getattr(event, "stage", None) == "loading"]
    finally:
        assert backend.close(timeout=EVENT_TIMEOUT_S) == 0


def test_a_real_preload_without_weights_is_logged_and_the_generate_reports_the_missing_weights(
    backend_env, tmp_path
) -> None:
    backend = RawBackend(service_argv("--stdio", "--preload", "--model", "lite", "--model-dir", str(tmp_path),
                                      "--device", "cpu"), backend_env)
    try:
        assert backend.next_event().TYPE == "hello"
        backend.wait_for_stderr(lambda line: "preloading the model failed (weights_missing" in line)
        backend.send(b'{"type": "generate", "id": "g", "prompts": ["a person waves"]}\n')
        events = backend.events_until(lambda event: event.TYPE in ("done", "error"))
        error = events[-1]
        assert (error.TYPE, error.job, error.code) == ("error", "g", errors.WEIGHTS_MISSING)
        assert str(tmp_path) in error.message and error.hint
    finally:
        assert backend.close(timeout=EVENT_TIMEOUT_S) == 0


def test_shutdown_right_after_the_hello_of_a_preloading_backend_ends_it_cleanly(backend_env) -> None:
    backend = RawBackend(service_argv("--stdio", "--preload", *TINY_ARGS), backend_env)
    assert backend.next_event().TYPE == "hello"
    backend.send(b'{"type": "shutdown", "id": "bye"}\n')
    assert backend.next_event().TYPE == "ack"
    assert backend.process.wait(EVENT_TIMEOUT_S) == 0
    assert backend.close(timeout=EVENT_TIMEOUT_S) == 0
