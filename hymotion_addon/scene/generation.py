"""One generation as Blender sees it: ask the backend for clips, bake each result into an Action the moment it
arrives, follow progress, cancel, and end with the Actions made and the error (if any).

The same :class:`Run` serves the modal operators (``update`` on each timer tick, never blocking), background mode
and the scripting API (``run_until_done``, blocking on the backend's events). Backend I/O happens on the client's
reader thread; everything here runs on Blender's main thread, the only one that touches bpy.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable

import bpy

from hymotion.shared import errors
from hymotion.shared.errors import HyMotionError, bad_request
from hymotion.shared.jobs import GenerationSettings
from hymotion.shared.protocol import (
    DoneEvent,
    ErrorEvent,
    Event,
    GenerateConstraint,
    ProgressEvent,
    ResultEvent,
    WarningEvent,
)

from ..core.backend_manager import MANAGER, READY, STARTING, BackendConfig, BackendManager, error_from_event
from ..core.blender_hints import in_blender_words
from ..core.client import BACKEND_RESTARTS_HINT
from . import bake, rig, rig_placement, rig_pose, takes

_WAIT_SLICE_S = 0.5
STAGE_LABELS = {"loading": "Loading the model", "encoding": "Reading the prompt", "sampling": "Sampling",
                "decoding": "Decoding"}
# Share of the progress bar each stage fills. Sampling steps count on across batches (total = steps x batches) and
# each batch is decoded in between, so the sampling span covers decoding too; the last decode fills the bar.
_STAGE_SPANS = {"starting": (0.0, 0.02), "loading": (0.02, 0.1), "encoding": (0.1, 0.15), "sampling": (0.15, 1.0)}


@dataclass
class Clip:
    """One prompt to generate, with its duration in seconds."""

    prompt: str
    duration: float


@dataclass
class RunSpec:
    """What to generate and how to bake it. ``nla_layout`` None leaves each Action assigned (Generate); SEQUENCE or
    STACK pushes each onto the NLA (Batch Bake). ``constraint`` pins known frames; ``timeline`` makes the clips one
    continuous motion per seed (one Action each); ``takes`` lists each Action as a take of the rig (scene.takes)."""

    clips: list[Clip]
    seeds: list[int]
    cfg: float
    steps: int
    smoothing: bool
    fps_mode: str = "RESAMPLE"
    in_place: bool = False
    start_frame: int = 1
    nla_layout: str | None = None
    with_mesh: bool = False
    keys: str = "EVERY_FRAME"  # or "SPARSE" (bake.KEY_MODES)
    constraint: GenerateConstraint | None = None
    timeline: bool = False
    takes: bool = False

    def settings(self) -> GenerationSettings:
        """The request as the backend will check it, checked here first so mistakes never reach the backend."""
        return GenerationSettings(
            prompts=[clip.prompt for clip in self.clips],
            durations=[clip.duration for clip in self.clips],
            seeds=list(self.seeds),
            cfg_scale=self.cfg,
            steps=self.steps,
            smoothing=self.smoothing,
        ).validate()


ActionObserver = Callable[["Run", bpy.types.Action], None]

observers: list[ActionObserver] = []
"""Called on the main thread after every Action any run bakes (scripts may render a preview, log, or stop a run)."""


@dataclass
class Run:
    """One generation on the session's backend. ``armature`` None builds a new rig at the first result; ``actions``
    grow as results are baked; once ``finished``, ``error`` is None for success or a cancel the user asked for."""

    spec: RunSpec
    config: BackendConfig
    scene: bpy.types.Scene
    collection: bpy.types.Collection
    armature: bpy.types.Object | None = None
    manager: BackendManager = MANAGER
    on_action: ActionObserver | None = None
    actions: list[bpy.types.Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    job: str | None = None
    stage: str = "starting"
    step: int = 0
    total: int = 0
    error: HyMotionError | None = None
    cancel_requested: bool = False
    finished: bool = False
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    _fraction: float = 0.0
    settings: GenerationSettings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = self.spec.settings()  # checked once, here: a Run never holds settings the backend refuses

    @property
    def expected(self) -> int:
        return len(self.spec.seeds) * (1 if self.spec.timeline else len(self.spec.clips))

    @property
    def cancelled(self) -> bool:
        return self.finished and self.cancel_requested and (self.error is None or self.error.code == errors.CANCELLED)

    # --- driving ----------------------------------------------------------------------------------------------------

    def begin(self, wait: bool) -> None:
        """Start the backend if needed and send the job (now, or on a later update once the backend is ready)."""
        try:
            self.manager.ensure_started(self.config, wait)
        except HyMotionError as error:
            self._finish(error)
            return
        self._submit_when_ready()

    def update(self, wait: float = 0.0) -> None:
        """One tick: submit once the backend is ready, then handle the events that arrived, waiting up to ``wait``
        seconds for them (0, never blocking, on the UI's timer)."""
        if self.finished:
            return
        if self.job is None:
            self._submit_when_ready(wait)
            return
        self._handle(self.manager.wait_events(wait) if wait > 0 else self.manager.poll_events())

    def run_until_done(self, timeout: float | None = None) -> None:
        """Block until the run finishes (background mode, scripts); past ``timeout`` seconds, cancel it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        while not self.finished:
            if deadline is not None and not timed_out and time.monotonic() > deadline:
                timed_out = True
                self.cancel()
            self.update(_WAIT_SLICE_S)
        if timed_out and self.error is None and len(self.actions) < self.expected:
            self.error = HyMotionError(
                errors.CANCELLED,
                f"No complete result within {timeout:g} s, so the generation was cancelled.",
                "Allow more time, or use fewer seeds, steps or prompts.",
            )

    def cancel(self) -> None:
        """Stop the job; Actions already baked stay. The run finishes when the backend confirms."""
        if self.finished or self.cancel_requested:
            return
        self.cancel_requested = True
        if self.job is None:
            self._finish(None)
            return
        try:
            self.manager.client().cancel(self.job)
        except HyMotionError:
            self._finish(None)

    def stop_now(self, reason: str) -> None:
        """Cancel and finish at once, without waiting for the backend: for when nothing will update this run again
        (its modal operator was ended, the file is being replaced)."""
        if self.finished:
            return
        if self.job is not None and not self.cancel_requested:
            try:
                self.manager.client().cancel(self.job)
            except HyMotionError:
                pass
        self.cancel_requested = True
        self._finish(HyMotionError(errors.CANCELLED, reason, "Generate again when ready."))

    # --- progress, for the status bar and the panel -----------------------------------------------------------------

    @property
    def fraction(self) -> float:
        """Progress from 0 to 1, never going back."""
        return self._fraction

    def status_text(self) -> str:
        if self.cancel_requested and not self.finished:
            return "HY-Motion: cancelling…"
        if self.stage == "starting":
            return "HY-Motion: starting the backend…"
        label = STAGE_LABELS.get(self.stage, self.stage)
        steps = f" {self.step}/{self.total}" if self.stage == "sampling" and self.total else ""
        return f"HY-Motion: {label}{steps} · {len(self.actions)}/{self.expected} clips · Esc to cancel"

    def progress_text(self) -> str:
        """The sidebar's progress bar: the stage, the clips and the seconds so far (the Cancel button sits under it,
        and the status bar says Esc), short enough for the sidebar's default width."""
        stage = self.status_text().removeprefix("HY-Motion: ").removesuffix(" · Esc to cancel")
        return f"{stage} · {time.monotonic() - self.started_at:.0f} s"

    # --- internals --------------------------------------------------------------------------------------------------

    def _submit_when_ready(self, wait: float = 0.0) -> None:
        if self.manager.status().state == STARTING and wait > 0:
            self.manager.wait_started(wait)
        status = self.manager.status()
        if status.state == READY:
            self._submit()
        elif status.state != STARTING:
            self._finish(
                status.error or HyMotionError(errors.BACKEND_DIED, "The backend is not running.", BACKEND_RESTARTS_HINT)
            )

    def _submit(self) -> None:
        if self.cancel_requested:
            self._finish(None)
            return
        try:
            self.job = self.manager.client().submit_settings(
                self.settings, constraint=self.spec.constraint, timeline=self.spec.timeline
            )
        except HyMotionError as error:
            self._finish(error)

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if self.finished or getattr(event, "job", None) != self.job:
                continue
            if isinstance(event, ProgressEvent):
                self.stage, self.step, self.total = event.stage, event.step, event.total
                self._fraction = max(self._fraction, _stage_fraction(event))
            elif isinstance(event, WarningEvent):
                self.warnings.append(event.message)
            elif isinstance(event, ResultEvent):
                self._bake(event)
            elif isinstance(event, DoneEvent):
                self._finish(None)
            elif isinstance(event, ErrorEvent):
                cancelled = event.code == errors.CANCELLED and self.cancel_requested
                self._finish(None if cancelled else error_from_event(event))

    def _bake(self, result: ResultEvent) -> None:
        try:
            armature = self._target_armature()
            previous = armature.animation_data.action if armature.animation_data else None
            constraint = self.spec.constraint
            bake_clip = bake.bake_motion
            if not rig.is_hymotion_armature(armature):  # the animator's mapped rig: retargeted onto it
                continues = constraint is not None and (constraint.start is not None or constraint.end is not None)
                bake_clip = functools.partial(
                    rig_pose.bake_piece, continues=continues,
                    pinned_start=constraint is not None and constraint.start is not None,
                    pinned_end=constraint is not None and constraint.end is not None)
            action = bake_clip(
                armature,
                result.translation.to_numpy(),
                result.rotations.to_numpy(),
                prompt=result.prompt,
                seed=result.seed,
                model=result.model,
                duration=result.duration,
                scene=self.scene,
                start_frame=self.spec.start_frame,
                in_place=self.spec.in_place,
                fps_mode=self.spec.fps_mode,
                keys=self.spec.keys,
                loop=constraint is not None and bool(constraint.loop),
            )
            action.use_fake_user = True
            if self.spec.nla_layout is not None:
                bake.push_to_nla(armature, action, self.spec.nla_layout)
            if self.spec.takes:
                takes.add_take(armature, action, previous=previous, made_with=self._recipe())
        except (HyMotionError, ReferenceError, RuntimeError, ValueError) as error:
            self._abandon(_bake_error(error))
            return
        self.actions.append(action)
        for observer in [self.on_action, *observers]:
            if observer is None:
                continue
            try:
                observer(self, action)
            except Exception as error:  # a script's callback must not leave the run half-finished
                self._abandon(HyMotionError(
                    errors.INTERNAL, f"A script's callback {observer!r} failed: {error!r}.", "Fix the callback."
                ))
                return

    def _recipe(self) -> dict:
        spec = self.spec
        return {"cfg": spec.cfg, "steps": spec.steps, "smoothing": spec.smoothing, "in_place": spec.in_place,
                "fps_mode": spec.fps_mode}

    def _target_armature(self) -> bpy.types.Object:
        if self.armature is None:
            prompts = [clip.prompt for clip in self.spec.clips]
            self.armature = rig.build_armature(self.collection, name=rig_placement.armature_name(
                [" ".join(prompts)] if self.spec.timeline else prompts), with_mesh=self.spec.with_mesh)
            rig_placement.place_beside_others(self.armature, self.scene)
        elif self.armature.name not in bpy.data.objects:
            raise bad_request("The target armature was deleted during generation.", "Generate again.")
        return self.armature

    def _abandon(self, error: HyMotionError) -> None:
        """Stop the job after a failure on this side; the Actions made so far stay."""
        if self.job is not None:
            try:
                self.manager.client().cancel(self.job)
            except HyMotionError:
                pass
        self._finish(error)

    def _finish(self, error: HyMotionError | None) -> None:
        if self.finished:
            return
        self.finished = True
        self.ended_at = time.monotonic()
        if self.error is None:
            self.error = in_blender_words(error) if error is not None else None

    # --- the sentence the operator reports --------------------------------------------------------------------------

    def summary(self) -> str:
        made = f"{len(self.actions)} of {self.expected} Action{'s' if self.expected != 1 else ''}"
        seconds = (self.ended_at if self.ended_at is not None else time.monotonic()) - self.started_at
        if self.error is not None and self.error.code != errors.CANCELLED:
            if not self.actions:
                return f"HY-Motion made nothing: {self.error}"
            return f"HY-Motion stopped after {made}: {self.error}"
        if self.cancel_requested or self.error is not None:
            reason = f" ({self.error.message})" if self.error is not None else ""
            return f"HY-Motion cancelled{reason}; kept {made}."
        return f"HY-Motion made {made} in {seconds:.1f} s."


def _stage_fraction(event: ProgressEvent) -> float:
    if event.stage == "decoding":
        return 1.0 if event.total and event.step >= event.total else 0.0
    low, high = _STAGE_SPANS[event.stage]
    within = event.step / event.total if event.total else 0.0
    return low + (high - low) * min(max(within, 0.0), 1.0)


def _bake_error(error: Exception) -> HyMotionError:
    if isinstance(error, HyMotionError):
        return error
    return HyMotionError(
        errors.INTERNAL,
        f"Baking a result failed: {error}.",
        "The armature or scene may have changed during generation; generate again.",
    )


active_run: Run | None = None
"""The run in progress (one at a time per Blender session), for the panel and the status bar."""


def start_run(run: Run, wait: bool) -> Run:
    """Make ``run`` the session's active run and begin it; refuses while another one is going."""
    global active_run
    if active_run is not None and not active_run.finished:
        raise bad_request("HY-Motion is already generating.", "Wait for it to finish, or press Esc to cancel it.")
    active_run = run
    run.begin(wait)
    return run


def cancel_active_run() -> None:
    if active_run is not None:
        active_run.cancel()


def stop_active_run(reason: str) -> None:
    if active_run is not None:
        active_run.stop_now(reason)
