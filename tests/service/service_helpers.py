"""Helpers for the service tests: the add-on client loaded without bpy, and a raw line-level harness for the server."""

from __future__ import annotations

import importlib
import queue
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from hymotion.pipeline.motion import MotionClip
from hymotion.shared import skeleton
from hymotion.shared.errors import CANCELLED, HyMotionError
from hymotion.shared.jobs import MAX_STEPS, frames_for_duration
from hymotion.shared.protocol import Event, ProtocolError, ResultEvent, decode_event

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKER_ENV = "HYMOTION_TEST_MARKER"
TINY_ARGS = ["--model", "tiny-random", "--device", "cpu"]
EVENT_TIMEOUT_S = 60.0
# The most steps a job may have: on the tiny model at least ~10 s, far longer than any test takes to cancel it.
LONG_JOB_STEPS = MAX_STEPS

# Tests read an event's fields once they have checked its TYPE, a narrowing mypy cannot follow.
AnyEvent = Any


def load_client_module() -> ModuleType:
    """The add-on's client, hymotion_addon.core.client: the core sub-package imports no bpy, so it loads here."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("hymotion_addon.core.client")


def service_argv(*extra: str) -> list[str]:
    return [sys.executable, "-m", "hymotion.service", *extra]


def check_result_arrays(result: ResultEvent) -> None:
    """The decoded arrays are one consistent motion: positions are forward kinematics of rotations + translation."""
    rotations = result.rotations.to_numpy()
    translation = result.translation.to_numpy()
    positions = result.positions.to_numpy()
    assert result.joint_names == list(skeleton.BODY_JOINT_NAMES)
    assert result.parents == list(skeleton.BODY_PARENTS)
    np.testing.assert_allclose(result.rest_offsets.to_numpy(), skeleton.BODY_REST_OFFSETS, atol=1e-6)
    assert rotations.dtype == np.float32 and rotations.shape == (result.frames, 22, 4)
    np.testing.assert_allclose(np.linalg.norm(rotations, axis=-1), 1.0, atol=1e-4)
    np.testing.assert_allclose(skeleton.forward_kinematics(rotations, translation), positions, atol=1e-4)


class InstantPipeline:
    """Stands in for MotionPipeline: one clip per prompt x seed, at once, and honours cancellation."""

    plan = "cpu"
    device = "cpu"
    variant = "lite"
    text_encoder_prepared = False

    def describe(self) -> dict:
        return {"plan": self.plan}

    def prepare_text_encoder(self) -> None:
        self.text_encoder_prepared = True

    def generate(self, settings, on_progress=None, should_cancel=lambda: False, on_warning=None, constraint=None):
        for index, (prompt, duration) in enumerate(zip(settings.prompts, settings.durations)):
            frames = frames_for_duration(duration)
            for seed in settings.seeds:
                if should_cancel():
                    raise HyMotionError(CANCELLED, "The job was cancelled.")
                rotations = np.tile(np.array([1.0, 0, 0, 0], dtype=np.float32), (frames, 22, 1))
                yield MotionClip(np.zeros((frames, 3)), rotations, np.zeros((frames, 22, 3)), prompt=prompt,
                                 seed=seed, duration=duration, prompt_index=index, plan=self.plan)


class RawBackend:
    """The server as a plain child process: bytes in; stdout lines decoded as events (anything else is kept apart)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.stdin, self.stdout, self.stderr = self.process.stdin, self.process.stdout, self.process.stderr
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.unreadable: list[bytes] = []
        self.stderr_lines: list[str] = []
        self.stderr_seen = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in iter(self.stdout.readline, b""):
            try:
                self.events.put(decode_event(line))
            except ProtocolError:
                self.unreadable.append(line)
        self.events.put(None)

    def _read_stderr(self) -> None:
        for line in iter(self.stderr.readline, b""):
            with self.stderr_seen:
                self.stderr_lines.append(line.decode("utf-8", "replace").rstrip("\n"))
                self.stderr_seen.notify_all()

    def wait_for_stderr(self, predicate: Callable[[str], bool], timeout: float = EVENT_TIMEOUT_S) -> str:
        with self.stderr_seen:
            assert self.stderr_seen.wait_for(lambda: any(map(predicate, self.stderr_lines)), timeout), self.stderr_lines
            return next(line for line in self.stderr_lines if predicate(line))

    def send(self, data: bytes) -> None:
        self.stdin.write(data)
        self.stdin.flush()

    def next_event(self, timeout: float = EVENT_TIMEOUT_S) -> AnyEvent:
        event = self.events.get(timeout=timeout)
        assert event is not None, f"the server closed its stdout; stderr: {self.stderr_lines[-20:]}"
        return event

    def events_until(self, last: Callable[[AnyEvent], bool], timeout: float = EVENT_TIMEOUT_S) -> list[AnyEvent]:
        events = [self.next_event(timeout)]
        while not last(events[-1]):
            events.append(self.next_event(timeout))
        return events

    def close(self, timeout: float = 30.0) -> int:
        """Close stdin and reap the process (killing its group if it does not leave); returns the exit code."""
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for thread in self._threads:
            thread.join(timeout)
        self.stdout.close()
        self.stderr.close()
        return code
