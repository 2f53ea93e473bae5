"""When each start-up stage runs, and on which thread, in a fresh backend's way to its first clip.

``start_up_profile.py`` runs the stages one after another to size each; this runs ``load_pipeline`` and one new
prompt as ``hymotion bench`` does (stages overlapped: ``gpu``'s early Qwen3 upload, the text encoder's loading thread)
and prints the timeline, so what waits on what can be seen. ``--without-early-upload`` turns the early upload off, for
comparison in the same environment. Needs the random real-size weights ``hymotion bench --work-dir DIR``
writes. Usage (on a CUDA machine): python benchmarks/start_up_timeline.py --work-dir DIR --plan stream
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
from hymotion.model import text_encoder  # noqa: E402
from hymotion.pipeline import layer_streaming, loading, memory  # noqa: E402
from hymotion.pipeline import sampling as pipeline
from hymotion.weights import VARIANT_FOLDERS  # noqa: E402

EVENTS: list[tuple[float, str, str]] = [
    (time.perf_counter() - STARTED, "main", "torch and hymotion.pipeline.sampling imported")
]


def note(event: str) -> None:
    name = threading.current_thread().name
    EVENTS.append((time.perf_counter() - STARTED, "main" if name == "MainThread" else name, event))


def timed(owner: object, attribute: str, label: str) -> None:
    """Note when ``owner.attribute`` starts and ends (after the GPU has finished its work)."""
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        note(f"{label} ...")
        result = original(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        note(f"... {label}")
        return result

    setattr(owner, attribute, wrapper)


class _NoEarlyUpload:
    def __init__(self, *args) -> None:
        pass

    def result(self) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--plan", default="stream", choices=("gpu", "stream"))
    parser.add_argument("--without-early-upload", action="store_true")
    args = parser.parse_args()
    for owner, attribute, label in (
        (text_encoder, "upload_safetensors", "Qwen3 to the GPU from its files"),
        (loading, "load_real_text_encoder", "text encoder built (modelling imported)"),
        (memory, "place_text_encoder", "text encoder placed"),
        (layer_streaming, "upload", "pinned upload"),
        (text_encoder.TextEncoder, "encode", "prompt encoded"),
        (pipeline.MotionPipeline, "switch_plan", "DiT placed"),
        (pipeline.MotionPipeline, "warm_up", "default CUDA graph captured"),
    ):
        timed(owner, attribute, label)
    if args.without_early_upload:
        loading.EarlyQwenUpload = _NoEarlyUpload  # type: ignore[misc, assignment]  # a stand-in class, on purpose
    note("load_pipeline ...")
    pipe = loading.load_pipeline(
        str(args.work_dir / VARIANT_FOLDERS["lite"]), model_dir=args.work_dir, plan=args.plan, device="cuda",
        cache_dir=tempfile.mkdtemp(prefix="hymotion-timeline-"),
    )
    note("... load_pipeline")
    list(pipe.generate(pipeline.GenerationSettings(["a person walks forward and waves"], [5.0], [0])))
    torch.cuda.synchronize()
    note("first clip of a new prompt")
    early = "without" if args.without_early_upload else "with"
    print(f"{torch.cuda.get_device_name()}, plan {args.plan}, {early} the early upload")
    for at, thread, event in EVENTS:
        print(f"{at:7.2f} s  {thread:<22} {event}")


if __name__ == "__main__":
    main()
