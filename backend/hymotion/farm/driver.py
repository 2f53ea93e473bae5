"""`hymotion farm`: a long prompt list × seeds on every GPU of one machine or a Ray cluster, resumable.

A face on the pipeline, like the service; Ray does the placing. One Ray actor per GPU (``num_gpus=1``; CPU workers when
there is no GPU) loads the model once and makes the clips of the work units it is handed. Every clip is its own file,
``OUT/clips/<id>_s<seed>.npz``, written under a temporary name and renamed into place, so a clip file that exists is
complete, and a re-run after a crash, a killed worker or a lost node makes only the missing ones. ``--blend-every N``
bakes each N clips into a ``.blend`` library in a Ray CPU task, through ``hymotion-bake``'s Blender code. An index
(JSON and CSV) lists every clip. Ray is an optional extra: ``pip install "hymotion[farm]"``.

Why actors rather than Ray Data: see docs/farm.md. Python use::

    from hymotion.farm.driver import farm
    summary = farm("prompts.txt", "library/", seeds="0-3", model="lite", blend_every=100)
"""

from __future__ import annotations

import collections
import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..pipeline.memory import PLAN_CHOICES
from ..shared.errors import HyMotionError, bad_request
from ..shared.files import write_text_atomically
from ..shared.jobs import (
    DEFAULT_CFG,
    DEFAULT_STEPS,
    check_duration,
    parse_seeds,
)
from .planning import (
    CLIPS_FOLDER,
    DEFAULT_UNIT_SIZE,
    EMBEDDINGS_FOLDER,
    INDEX_COLUMNS,
    INDEX_CSV,
    INDEX_JSON,
    LIBRARIES_FOLDER,
    SETTINGS_FILE,
    SUMMARY_FILE,
    FarmClip,
    FarmSettings,
    Library,
    check_generation,
    plan_libraries,
    plan_units,
    read_farm_prompts,
    remove_partial_files,
)
from .worker import CPU_CORES_PER_WORKER, WORKER_START_TIMEOUT_S, FarmWorker, bake_farm_library

LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2  # units and reports are small; clips go to disk, not through Ray
# Ray restarts a killed worker once (max_restarts below). A call that reaches it before Ray has noticed the death
# fails as "temporarily unavailable"; later calls wait for the restart. So a ready() that fails that way is asked
# again, READY_RETRY_GAP_S apart, at most READY_RETRIES times (10 s): far past the second or so Ray takes to notice.
WORKER_RESTARTS = 1
READY_RETRIES = 50
READY_RETRY_GAP_S = 0.2
# A unit whose worker died under it runs again (a death is no fault of the unit's) unless it has now taken down this
# many workers: then it is the likely cause (a prompt that runs out of host memory), and its clips fail.
MAX_UNIT_DEATHS = 3


# --- the work, planned without Ray ----------------------------------------------------------------------------------


# --- on the workers (Ray actors and tasks) --------------------------------------------------------------------------


# --- the driver -----------------------------------------------------------------------------------------------------


@dataclass
class FarmSummary:
    """What a run did. Clips are counted from the files on disk at the end, so a killed unit's finished clips count."""

    total: int = 0
    made: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # clip key -> reason
    bad_lines: list[dict[str, str]] = field(default_factory=list)
    libraries_baked: int = 0
    libraries_skipped: int = 0
    libraries_failed: dict[str, str] = field(default_factory=dict)  # library file -> reason
    libraries_waiting: list[str] = field(default_factory=list)  # libraries with a failed clip
    units_retried: int = 0
    workers: list[str] = field(default_factory=list)
    workers_lost: int = 0
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    first_clip_s: float | None = None  # from the start of the run (Ray start and model loading included)
    last_clip_s: float | None = None

    @property
    def clips_per_s(self) -> float:
        return self.made / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clips_per_s": self.clips_per_s}

    def exit_code(self) -> int:
        """0: everything made; 2: bad prompt lines (fix the file); 1: clips or libraries failed (run again)."""
        if self.bad_lines:
            return 2
        return 1 if self.failed or self.libraries_failed or self.libraries_waiting else 0

    def describe(self) -> str:
        lines = [f"{self.made} made, {self.skipped} skipped (already there), {len(self.failed)} failed "
                 f"of {self.total} clips in {self.elapsed_s:.1f} s ({self.clips_per_s:.2f} clips/s)"]
        if self.first_clip_s is not None:
            lines.append(f"first clip after {self.first_clip_s:.1f} s")
        if self.libraries_baked or self.libraries_skipped or self.libraries_failed or self.libraries_waiting:
            lines.append(f"libraries: {self.libraries_baked} baked, {self.libraries_skipped} up to date, "
                         f"{len(self.libraries_failed)} failed, {len(self.libraries_waiting)} waiting for failed clips")
        if self.units_retried or self.workers_lost:
            lines.append(f"{self.units_retried} unit(s) retried, {self.workers_lost} worker(s) lost")
        for reason, count in collections.Counter(self.failed.values()).items():
            example = next(key for key, why in self.failed.items() if why == reason)
            lines.append(f"{count} clip(s) failed ({example}{', …' if count > 1 else ''}): {reason}")
        lines += [f"library {file} failed: {reason}" for file, reason in self.libraries_failed.items()]
        lines += [f"bad line: {line['message']}" + (f" ({line['hint']})" if line["hint"] else "")
                  for line in self.bad_lines]
        if self.failed or self.libraries_failed or self.libraries_waiting:
            lines.append("Run the same command again to make only what is missing.")
        return "\n".join(lines)


@dataclass
class _Unit:
    clips: list[FarmClip]
    attempt: int = 0
    avoid: int | None = None  # the worker it failed on
    deaths: int = 0  # workers that died while it ran


def farm(
    prompts: str | os.PathLike,
    out: str | os.PathLike,
    *,
    address: str | None = None,
    seeds: str | list[int] = "0",
    duration: float | None = None,
    model: str = "lite",
    model_dir: str | None = None,
    plan: str = "auto",
    cache_dir: str | None = None,
    steps: int = DEFAULT_STEPS,
    cfg: float = DEFAULT_CFG,
    smoothing: bool = True,
    compile_dit: bool = False,
    workers: int | None = None,
    unit_size: int = DEFAULT_UNIT_SIZE,
    blend_every: int | None = None,
    blender: str | None = None,
    bpy_python: str | None = None,
    progress: bool = True,
    on_unit: Callable[[dict[str, Any]], None] | None = None,
    worker_start_timeout: float = WORKER_START_TIMEOUT_S,
) -> FarmSummary:
    """Make every prompt × seed of ``prompts`` into ``out`` (see the module docstring); returns the summary.

    ``address``: None starts a local Ray on this machine (or uses the one this process is already connected to),
    "auto" joins the cluster this machine belongs to, "ray://host:10001" connects as a Ray client. ``on_unit`` is
    called in this process with each finished unit's report (worker number and pid, clips made).
    """
    started = time.time()
    out = Path(out).expanduser().resolve()
    seed_list = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    check_generation(seed_list, steps, cfg)
    if duration is not None:
        check_duration(duration)
    if plan not in PLAN_CHOICES:
        raise bad_request(f"Unknown memory plan {plan!r}.", f"Use one of {', '.join(PLAN_CHOICES)}.")
    for name, value in (("unit_size", unit_size), ("blend_every", blend_every), ("workers", workers)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise bad_request(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value!r}.",
                              "Leave it out for the default.")
    clips, bad_lines = read_farm_prompts(prompts, seed_list, duration)
    settings = FarmSettings(_model_setting(model), _absolute(model_dir), plan,
                            _absolute(cache_dir) or str(out / EMBEDDINGS_FOLDER), steps, cfg, smoothing,
                            compile_dit)
    blender, bpy_python = (_absolute(path) if path and os.sep in path else path for path in (blender, bpy_python))
    _prepare_out(out, settings)
    if blend_every is not None and address is None:
        from ..bake import blender_command

        blender_command(blender, bpy_python)  # no Blender: fail now, not after hours of generation
    for error in bad_lines:
        print(f"warning: {error.message}" + (f" (hint: {error.hint})" if error.hint else ""), file=sys.stderr)
    if settings.model == "tiny-random":
        print("The tiny-random model has random weights: every clip it makes is noise.", file=sys.stderr)

    remove_partial_files(out)
    previous = _read_previous_index(out)
    run = _FarmRun(out, clips, settings, started, progress, on_unit)
    run.summary.bad_lines = [error.to_dict() for error in bad_lines]
    libraries = plan_libraries(clips, blend_every, Path(prompts).stem) if blend_every else []
    run.plan(unit_size, libraries, previous)
    if run.has_work():
        ray, started_here = _connect(address)
        try:
            run.execute(ray, workers, blender, bpy_python, worker_start_timeout)
        finally:
            run.stop_workers(ray)
            if started_here:
                ray.shutdown()
    remove_partial_files(out)
    run.finish()
    return run.summary


def _absolute(path: str | None) -> str | None:
    """Workers may run in another folder (or on another machine with the same mounts): hand them absolute paths."""
    return str(Path(path).expanduser().resolve()) if path else None


def _model_setting(model: str) -> str:
    from ..weights import VARIANT_FOLDERS

    # A path, made absolute like _absolute's (which would give None for "", where a model name is needed).
    return model if model in VARIANT_FOLDERS or model == "tiny-random" else str(Path(model).expanduser().resolve())


def _prepare_out(out: Path, settings: FarmSettings) -> None:
    """Create the output folders; refuse a folder whose clips were made with other motion settings."""
    if out.exists() and not out.is_dir():
        raise bad_request(f"--out {out} is a file.", "Give a folder for the clips, libraries and index.")
    try:
        for folder in (out, out / CLIPS_FOLDER, out / LIBRARIES_FOLDER):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise bad_request(f"Cannot create {out}: {error.strerror}.", "Choose a folder you can write to.") from None
    if not os.access(out, os.W_OK):
        raise bad_request(f"Cannot write to {out}.", "Choose a folder you can write to.")
    path = out / SETTINGS_FILE
    wanted = settings.motion_settings()
    if path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = None
        if recorded != wanted:
            recorded = recorded if isinstance(recorded, dict) else {}
            differences = ", ".join(f"{key} {recorded.get(key)!r} there, {value!r} asked" for key, value in
                                    wanted.items() if recorded.get(key) != value)
            raise bad_request(
                f"{out} holds clips made with other settings ({differences}).",
                "Run with the same --model, --steps, --cfg and smoothing to complete that folder, or choose a new "
                "--out.",
            )
    else:
        write_text_atomically(path, json.dumps(wanted, indent=1))


def _read_previous_index(out: Path) -> dict[str, list[str]]:
    """Libraries the last run baked: file -> clip keys (a library is up to date only if it holds the same clips)."""
    try:
        index = json.loads((out / INDEX_JSON).read_text(encoding="utf-8"))
        return {library["file"]: library["clips"] for library in index.get("libraries", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _connect(address: str | None):
    """Ray, and whether this call started it (then it is shut down at the end)."""
    try:
        import ray
    except ImportError:
        raise bad_request("`hymotion farm` needs Ray, which is not installed in this environment.",
                          'Install it with: pip install "hymotion[farm]"') from None
    if ray.is_initialized():
        return ray, False
    try:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as error:
        raise bad_request(
            f"Cannot {'start a local Ray' if address is None else f'connect to the Ray cluster at {address}'}: "
            f"{error}",
            "Start the head node with `ray start --head` (and `ray start --address HEAD:6379` on every other "
            "machine), then pass --address auto there; without --address, Ray runs on this machine only.",
        ) from None
    return ray, True


class _FarmRun:
    """One run's state: what to make, the Ray actors, the units in flight, the libraries to bake."""

    def __init__(self, out: Path, clips: list[FarmClip], settings: FarmSettings, started: float, progress: bool,
                 on_unit: Callable[[dict[str, Any]], None] | None) -> None:
        self.out = out
        self.clips = clips
        self.settings = settings
        self.started = started
        self.show_progress = progress
        self.on_unit = on_unit
        self.summary = FarmSummary(total=len(clips))
        self.existing = {clip.key for clip in clips if (out / clip.file).exists()}
        self.done = set(self.existing)
        self.units: collections.deque[_Unit] = collections.deque()
        self.libraries: list[Library] = []
        self.to_bake: list[Library] = []
        self.baked: dict[str, list[str]] = {}
        self.reasons: dict[str, str] = {}
        self.clip_times: list[float] = []
        self.actors: dict[int, Any] = {}
        self.workers_ready = 0
        self.ready_tries: collections.Counter[int] = collections.Counter()

    def plan(self, unit_size: int, libraries: list[Library], previous: dict[str, list[str]]) -> None:
        todo = [clip for clip in self.clips if clip.key not in self.existing]
        self.units.extend(_Unit(unit) for unit in plan_units(todo, unit_size))
        self.libraries = libraries
        for library in libraries:
            keys = [clip.key for clip in library.clips]
            up_to_date = ((self.out / library.file).is_file() and previous.get(library.file) == keys
                          and not any(clip.key not in self.existing for clip in library.clips))
            if up_to_date:
                self.baked[library.file] = keys
                self.summary.libraries_skipped += 1
            else:
                self.to_bake.append(library)

    def has_work(self) -> bool:
        return bool(self.units or self.to_bake)

    def execute(self, ray, workers: int | None, blender: str | None, bpy_python: str | None,
                start_timeout: float) -> None:
        """Hand units to idle workers until every unit is made or has failed twice; bake libraries as they fill."""
        from tqdm import tqdm

        bake = ray.remote(num_cpus=1, max_retries=0)(bake_farm_library)
        self._start_workers(ray, workers)
        idle: collections.deque[int] = collections.deque()
        starting = {self.actors[number].ready.remote(): number for number in self.actors}
        running: dict[Any, tuple[int, _Unit]] = {}
        baking: dict[Any, tuple[Library, int]] = {}
        start_errors: list[dict] = []
        stalled_since: float | None = None  # when units last started waiting with no worker to run them
        bar = tqdm(total=sum(len(unit.clips) for unit in self.units), unit="clip", desc="farm", file=sys.stderr,
                   disable=not self.show_progress, dynamic_ncols=True)
        try:
            while True:
                self._dispatch(idle, running)
                if not self.units and not running:
                    self.stop_workers(ray)  # CPU workers hold cores the bakes need
                    starting.clear()
                    idle.clear()
                for library in self._ready_libraries():
                    baking[bake.remote(str(self.out), library, blender, bpy_python)] = (library, 0)
                stalled = bool(self.units) and not running and not idle
                if stalled and not starting:
                    self._fail_units(self._no_worker_left(start_errors))
                    continue
                refs = [*running, *starting, *baking]
                if not refs:
                    break
                timeout: float | None = None
                if stalled:
                    stalled_since = stalled_since or time.monotonic()
                    timeout = max(0.0, start_timeout - (time.monotonic() - stalled_since))
                else:
                    stalled_since = None
                ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
                if not ready:
                    self._fail_units(f"no worker became ready within {start_timeout:.0f} s (are the GPUs busy, or "
                                     "was a node lost?)")
                    continue
                ref = ready[0]
                if ref in starting:
                    self._on_started(ray, starting.pop(ref), ref, idle, start_errors, starting)
                elif ref in running:
                    number, unit = running.pop(ref)
                    bar.update(self._on_unit_done(ray, ref, number, unit, idle, starting))
                else:
                    library, attempt = baking.pop(ref)
                    self._on_baked(ray, ref, library, attempt, baking, bake, blender, bpy_python)
                postfix: dict[str, int | str] = {"failed": len(self.reasons)}
                if self.libraries:
                    postfix["libraries"] = f"{len(self.baked)}/{len(self.libraries)}"
                bar.set_postfix(postfix, refresh=False)
        finally:
            bar.close()

    def _start_workers(self, ray, workers: int | None) -> None:
        if not self.units:
            return
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        on_gpu = gpus > 0 and self.settings.plan != "cpu"
        if not on_gpu and self.settings.plan not in ("auto", "cpu"):
            raise bad_request(f"--plan {self.settings.plan} needs GPUs, and the Ray cluster has none.",
                              "Use --plan auto (CPU workers here), or start Ray on machines with GPUs.")
        wanted = workers or (gpus if on_gpu else max(1, cpus // CPU_CORES_PER_WORKER))
        count = min(wanted, len(self.units))
        if on_gpu:
            options, device = {"num_gpus": 1}, None
            if wanted > gpus:
                print(f"warning: {wanted} GPU workers asked for, the cluster has {gpus} GPUs: the others start when "
                      "GPUs join", file=sys.stderr)
        else:
            spare = 1 if self.to_bake and cpus > count else 0  # a core for the bakes while generation runs
            options, device = {"num_cpus": max(1, (cpus - spare) // max(count, 1))}, "cpu"
        actor_class = ray.remote(max_restarts=WORKER_RESTARTS, max_task_retries=0)(FarmWorker)
        for number in range(count):
            self.actors[number] = actor_class.options(**options).remote(self.settings, str(self.out), device)
        each = "one GPU" if on_gpu else f"{options['num_cpus']} CPU core(s)"
        self.summary.workers.append(f"{count} worker(s), {each} each")

    def _dispatch(self, idle: collections.deque[int], running: dict) -> None:
        while idle and self.units:
            number = idle.popleft()
            unit = next_unit_for(number, self.units, others_alive=bool(idle) or bool(running))
            if unit is None:
                idle.append(number)
                return
            running[self.actors[number].make.remote(unit.clips)] = (number, unit)

    def _on_started(self, ray, number: int, ref, idle: collections.deque[int], start_errors: list[dict],
                    starting: dict) -> None:
        from ray.exceptions import RayError

        try:
            info = ray.get(ref)
        except RayError as error:
            if _restarting(error) and self.ready_tries[number] < READY_RETRIES:
                self.ready_tries[number] += 1
                time.sleep(READY_RETRY_GAP_S)
                starting[self.actors[number].ready.remote()] = number
                return
            self._lose_worker(ray, number, f"worker {number} died while loading the model: {_first_line(error)}")
            return
        self.ready_tries[number] = 0
        if info["error"]:
            start_errors.append(info["error"])
            self._lose_worker(ray, number, f"worker {number} could not load the model: {info['error']['message']}")
            return
        idle.append(number)
        self.workers_ready += 1
        self.summary.notes.append(f"worker {number}: pid {info['pid']} on {info['host']}, plan {info['plan']} "
                                  f"({info['device']})")

    def _on_unit_done(self, ray, ref, number: int, unit: _Unit, idle: collections.deque[int], starting: dict) -> int:
        from ray.exceptions import RayError

        try:
            report = ray.get(ref)
        except RayError as error:  # the worker process died (killed, out of host memory, node lost)
            self.summary.workers_lost += 1
            self._run_again_after_death(unit, number, f"worker {number} died: {_first_line(error)}")
            starting[self.actors[number].ready.remote()] = number  # Ray restarts it once; back when it is ready
            return 0
        idle.append(number)
        for record in report["made"]:
            self.done.add(record["key"])
            self.clip_times.append(record["at"])
        for note in report["notes"]:
            if note not in self.summary.notes:
                self.summary.notes.append(note)
        if report["error"]:
            self._retry(unit, number, report["error"]["message"])
        if self.on_unit is not None:
            self.on_unit({"worker": number, "pid": report["pid"], "made": [r["key"] for r in report["made"]],
                          "error": report["error"]})
        return len(report["made"])

    def _retry(self, unit: _Unit, number: int, reason: str) -> None:
        """A failed unit runs once more, on another worker where there is one; then its missing clips fail."""
        if unit.attempt == 0:
            self.summary.units_retried += 1
            self.summary.notes.append(f"a unit of {len(unit.clips)} clips runs again after: {reason}")
            self.units.appendleft(_Unit(unit.clips, attempt=1, avoid=number))
        else:
            for clip in unit.clips:
                if not (self.out / clip.file).exists():
                    self.reasons[clip.key] = reason

    def _run_again_after_death(self, unit: _Unit, number: int, reason: str) -> None:
        """The unit of a worker that died runs again elsewhere without using up its attempt (the clips it finished
        stay), unless it has taken down MAX_UNIT_DEATHS workers."""
        if unit.deaths + 1 >= MAX_UNIT_DEATHS:
            self._retry(_Unit(unit.clips, attempt=1), number, f"{reason}; {MAX_UNIT_DEATHS} workers died running it")
            return
        self.summary.units_retried += 1
        self.summary.notes.append(f"a unit of {len(unit.clips)} clips runs again after: {reason}")
        self.units.appendleft(_Unit(unit.clips, attempt=unit.attempt, avoid=number, deaths=unit.deaths + 1))

    def _fail_units(self, reason: str) -> None:
        while self.units:
            for clip in self.units.popleft().clips:
                self.reasons[clip.key] = reason

    def _lose_worker(self, ray, number: int, reason: str) -> None:
        self.summary.notes.append(reason)
        ray.kill(self.actors.pop(number))

    def _no_worker_left(self, start_errors: list[dict]) -> str:
        """Why the waiting units cannot run. If no worker could load the model, that error (with its hint) ends the
        run: it is the user's to fix (weights missing, a wrong --model), and every unit would meet it."""
        if start_errors and not self.workers_ready:
            first = start_errors[0]
            raise HyMotionError(first["code"], first["message"], first["hint"])
        return "every worker died; the Ray logs (/tmp/ray/session_latest/logs on each machine) say why"

    def _ready_libraries(self) -> list[Library]:
        """Libraries whose clips all exist (made now or before), in order, each handed out once."""
        ready = []
        finished = not self.units and not self.actors
        for library in list(self.to_bake):
            if finished:
                present = all((self.out / clip.file).exists() for clip in library.clips)
            else:
                present = all(clip.key in self.done for clip in library.clips)
            if present:
                self.to_bake.remove(library)
                ready.append(library)
        return ready

    def _on_baked(self, ray, ref, library: Library, attempt: int, baking: dict, bake, blender, bpy_python) -> None:
        from ray.exceptions import RayError

        try:
            result = ray.get(ref)
            reason = result["error"]["message"] if result["error"] else None
        except RayError as error:
            reason = f"the bake worker died: {_first_line(error)}"
        if reason is None:
            self.baked[library.file] = [clip.key for clip in library.clips]
            self.summary.libraries_baked += 1
        elif attempt == 0:
            baking[bake.remote(str(self.out), library, blender, bpy_python)] = (library, 1)
        else:
            self.summary.libraries_failed[library.file] = reason

    def stop_workers(self, ray) -> None:
        for actor in self.actors.values():
            ray.kill(actor)
        self.actors.clear()

    def finish(self) -> None:
        """Count from the files, write the index and summary, and print the summary."""
        summary = self.summary
        present = {clip.key for clip in self.clips if (self.out / clip.file).exists()}
        summary.skipped = len(self.existing)
        summary.made = len(present - self.existing)
        summary.failed = {clip.key: self.reasons.get(clip.key, "not made (the run was stopped)")
                          for clip in self.clips if clip.key not in present}
        summary.libraries_waiting = [library.file for library in self.to_bake]
        summary.elapsed_s = time.time() - self.started
        if self.clip_times:
            summary.first_clip_s = min(self.clip_times) - self.started
            summary.last_clip_s = max(self.clip_times) - self.started
        self._write_index(present)
        write_text_atomically(self.out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=1))
        print(summary.describe(), file=sys.stderr)

    def _write_index(self, present: set[str]) -> None:
        library_of = {clip.key: library.file for library in self.libraries if library.file in self.baked
                      for clip in library.clips}
        rows = [
            {"id": clip.id, "line": clip.line, "prompt": clip.prompt, "seed": clip.seed, "duration": clip.duration,
             "file": clip.file, "library": library_of.get(clip.key, ""),
             "action": clip.action if clip.key in library_of else ""}
            for clip in self.clips if clip.key in present
        ]
        libraries = [{"file": file, "clips": keys} for file, keys in self.baked.items()]
        index = {"settings": self.settings.motion_settings(), "clips": rows, "libraries": libraries}
        write_text_atomically(self.out / INDEX_JSON, json.dumps(index, indent=1))
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomically(self.out / INDEX_CSV, table.getvalue())


def next_unit_for(worker: int, units: collections.deque[_Unit], others_alive: bool) -> _Unit | None:
    """The first waiting unit this worker may take: a retried unit goes to a different worker than the one it failed
    on, unless no other worker is alive to take it. Removes and returns it; None leaves the retries to the others."""
    for position, unit in enumerate(units):
        if unit.avoid != worker or not others_alive:
            del units[position]
            return unit
    return None


def _restarting(error: BaseException) -> bool:
    """Ray's word that an actor is only temporarily unavailable (restarting), not dead for good."""
    from ray import exceptions

    unavailable = getattr(exceptions, "ActorUnavailableError", None)
    return unavailable is not None and isinstance(error, unavailable)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- command line ---------------------------------------------------------------------------------------------------


