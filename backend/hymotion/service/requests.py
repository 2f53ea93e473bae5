"""Requests into the pipeline's terms and results back into events: a ``generate`` request's settings and known
frames, a clip as a ``result`` event, and what the ``hello`` reports (models on disk, the torch device)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..shared import errors
from ..shared.errors import HyMotionError
from ..shared.protocol import (
    FloatArray,
    GenerateConstraint,
    GenerateRequest,
    ModelAvailability,
    PoseFrames,
    ProtocolError,
    ResultEvent,
)

if TYPE_CHECKING:  # the pipeline imports torch: only the functions that need it import it, when called
    from ..pipeline.directing import Directions
    from ..pipeline.known_frames import MotionConstraint, Pose
    from ..pipeline.motion import MotionClip
    from ..shared.jobs import GenerationSettings


def settings_from_request(request: GenerateRequest) -> GenerationSettings:
    """GenerationSettings from a request, checked by hymotion.shared.jobs (the CLI's rules and limits too)."""
    from ..shared.jobs import DEFAULT_CFG, DEFAULT_DURATION, DEFAULT_STEPS, GenerationSettings

    settings = GenerationSettings(
        prompts=request.prompts,
        durations=request.durations if request.durations is not None else [DEFAULT_DURATION],
        seeds=request.seeds if request.seeds is not None else [0],
        cfg_scale=request.cfg_scale if request.cfg_scale is not None else DEFAULT_CFG,
        steps=request.steps if request.steps is not None else DEFAULT_STEPS,
        smoothing=request.smoothing if request.smoothing is not None else True,
    )
    try:
        return settings.validate()
    except HyMotionError as error:
        raise ProtocolError(error.message, error.hint, field=error.field, request_id=request.id) from None


def check_plan_name(request: GenerateRequest) -> None:
    """A plan the backend does not know ("", "turbo") is refused when the job is queued, not when it runs; whether a
    known plan fits this machine (a GPU plan without a GPU) is still decided when the job runs."""
    from ..pipeline.memory import PLAN_CHOICES

    if request.plan is not None and request.plan not in PLAN_CHOICES:
        raise ProtocolError(f"Unknown memory plan {request.plan!r}.", f"Use one of {', '.join(PLAN_CHOICES)}, or leave "
                            "plan out for the service's own.", field="plan", request_id=request.id)


def constraint_from_request(request: GenerateRequest, settings: GenerationSettings) -> MotionConstraint | None:
    """The request's known frames, checked against the model's skeleton and the clips' durations now, so a
    constraint that cannot be met is refused before the job is queued (None: an unconstrained job)."""
    if request.constraint is None and not request.timeline:
        return None
    from ..pipeline.known_frames import MotionConstraint
    from ..pipeline.timeline import TIMELINE_CONTEXT, Segment, check_timeline

    spec = request.constraint or GenerateConstraint()
    try:
        start = _pose(spec.start, "constraint.start")
        constraint = MotionConstraint(start, _pose(spec.end, "constraint.end"), spec.loop, _directions(spec, start))
        if not request.timeline:
            constraint.check(settings.durations)
        elif spec.loop:
            raise errors.bad_request("A timeline cannot loop.", "Loop a single clip, or drop loop.", field="timeline")
        elif constraint.directions is not None:
            raise errors.bad_request("A timeline cannot follow a path or meet targets yet.",
                                     "Direct a single clip, or drop path and targets.", field="timeline")
        else:
            segments = [Segment(prompt, duration) for prompt, duration in zip(settings.prompts, settings.durations)]
            check_timeline(segments, TIMELINE_CONTEXT, constraint.start)
    except HyMotionError as error:
        field_name = error.field or ("timeline" if request.timeline else "constraint")
        raise ProtocolError(error.message, error.hint, field=field_name, request_id=request.id) from None
    return constraint


def _directions(spec: GenerateConstraint, start: Pose | None) -> Directions | None:
    """The constraint's path and targets (None: neither given), checked for reach."""
    if spec.path is None and not spec.targets:
        return None
    from ..pipeline.directing import directions_from_fields

    targets = [(t.joint, t.first, t.last, t.position, t.rotation) for t in spec.targets or []]
    return directions_from_fields(spec.path, targets, spec.facing or "path", start)


def _pose(frames: PoseFrames | None, path: str) -> Pose | None:
    from ..pipeline.known_frames import Pose
    from ..shared.skeleton import BODY_JOINT_NAMES

    if frames is None:
        return None
    joints = frames.rotations.shape[1]
    if joints != len(BODY_JOINT_NAMES):
        raise errors.bad_request(
            f"Field '{path}.rotations' holds {joints} joints; this model's skeleton has {len(BODY_JOINT_NAMES)}.",
            f"Send the {len(BODY_JOINT_NAMES)} SMPL-X body joints in the order of a result's joint_names.",
            field=f"{path}.rotations",
        )
    try:
        return Pose(frames.translation.to_numpy(), frames.rotations.to_numpy())
    except HyMotionError as error:
        raise errors.bad_request(f"Field '{path}': {error.message}", error.hint, field=path) from None


def result_event(job_id: str, index: int, clip: MotionClip) -> ResultEvent:
    from ..pipeline.finite import require_finite
    from ..shared.skeleton import BODY_JOINT_NAMES, BODY_PARENTS, BODY_REST_OFFSETS

    require_finite(clip)

    return ResultEvent(
        job=job_id,
        index=index,
        prompt_index=int(clip.prompt_index),
        prompt=clip.prompt,
        seed=int(clip.seed),
        duration=float(clip.duration),
        fps=int(clip.fps),
        frames=clip.frames,
        model=clip.model_id,
        plan=clip.plan,
        joint_names=list(BODY_JOINT_NAMES),
        parents=list(BODY_PARENTS),
        rest_offsets=FloatArray.from_numpy(BODY_REST_OFFSETS),
        translation=FloatArray.from_numpy(clip.translation),
        rotations=FloatArray.from_numpy(clip.rotations),
        positions=FloatArray.from_numpy(clip.positions),
    )


def model_availability(model_dir: str | None) -> list[ModelAvailability]:
    """Which released variants are on disk, and the command that fetches a missing one."""
    from .. import weights

    found = []
    for variant in weights.VARIANT_FOLDERS:
        try:
            weights.locate(variant, model_dir)
            found.append(ModelAvailability(name=variant, available=True))
        except Exception as error:  # noqa: BLE001 - any failure to find the files means "not available here"
            found.append(
                ModelAvailability(
                    name=variant,
                    available=False,
                    missing=[getattr(error, "message", str(error))],
                    download_command=weights.download_command(variant, model_dir),
                )
            )
    return found


def torch_device_report(device: str) -> tuple[str | None, int | None, int | None]:
    torch = sys.modules["torch"]
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return str(device), None, None
    index = torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    return torch.cuda.get_device_name(index), int(free), int(total)
