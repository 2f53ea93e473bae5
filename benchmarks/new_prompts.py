"""New prompts one after another in one backend, each split into Qwen3's pass, CLIP's, the whole encode and the time
Python's garbage collector held the process, with the token length of each Qwen3 pass and the page faults.

``hymotion bench`` gives three new prompts per plan; this gives a dozen, so a slow one can be told from a slow process
(on ``stream`` each new prompt moves Qwen3's 14 GB of layers through the GPU, bound by the host's copy rate). Needs
the random real-size weights ``hymotion bench --work-dir DIR`` writes. Usage (on a CUDA machine):
python benchmarks/new_prompts.py --work-dir DIR --plan stream
"""

import argparse
import ctypes
import functools
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
from hymotion.pipeline.loading import load_pipeline  # noqa: E402
from hymotion.shared.jobs import GenerationSettings  # noqa: E402
from hymotion.weights import VARIANT_FOLDERS  # noqa: E402

MADV_POPULATE_READ = 22
ACTIONS = "walks runs jumps waves spins kicks crouches stretches climbs dances bows claps".split()


def page_faults() -> tuple[int, int]:
    """The process's minor and major page faults so far."""
    fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    return int(fields[7]), int(fields[9])


def weight_mappings() -> list[tuple[int, int, int]]:
    """(start, length, KiB in the page tables) of each of this process's memory maps of safetensors files."""
    spans: list[tuple[int, int, int]] = []
    in_weights = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):  # a mapping's header line, as in /proc/self/maps
            in_weights = line.endswith(".safetensors")
            if in_weights:
                start, end = (int(address, 16) for address in head[0].split("-"))
                spans.append((start, end - start, 0))
        elif in_weights and head[0] == "Rss:":
            start, length, _ = spans[-1]
            spans[-1] = (start, length, int(head[1]))
    return spans


def weight_pages_mapped_mib() -> float:
    """How much of the safetensors files this process has mapped in its page tables (their Rss in smaps)."""
    return sum(resident for _, _, resident in weight_mappings()) / 1024


def populate_weight_mappings() -> None:
    """Map every page of the weight files into the page tables at once (``MADV_POPULATE_READ``, Linux 5.14)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for start, length, _ in weight_mappings():
        if libc.madvise(start, length, MADV_POPULATE_READ) != 0:
            raise OSError(ctypes.get_errno(), "madvise(MADV_POPULATE_READ) failed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--plan", default="stream", choices=("gpu", "stream"))
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--populate", action="store_true",
                        help="map the weight files' pages into the page tables before the first prompt")
    args = parser.parse_args()
    pipe = load_pipeline(str(args.work_dir / VARIANT_FOLDERS["lite"]), model_dir=args.work_dir, plan=args.plan,
                         device="cuda", cache_dir=tempfile.mkdtemp(prefix="hymotion-new-prompts-"))
    encoder = pipe.text_encoder()
    if args.populate:
        begin = time.perf_counter()
        populate_weight_mappings()
        print(f"weight mappings populated in {time.perf_counter() - begin:.2f} s")
    seconds: dict[str, float] = {}

    def timed(owner: object, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def wrapper(*arguments, **keywords):
            torch.cuda.synchronize()
            begin = time.perf_counter()
            result = original(*arguments, **keywords)
            torch.cuda.synchronize()
            seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - begin
            return result

        setattr(owner, attribute, wrapper)

    passes: list[int] = []
    encoder.qwen_model.register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    timed(encoder.qwen_model, "forward", "qwen3")
    timed(encoder.clip_model, "forward", "clip")
    timed(encoder, "encode", "encode")
    collecting: list[float] = []

    def on_collection(phase: str, info: dict) -> None:
        if phase == "start":
            collecting.append(time.perf_counter())
        elif collecting:
            seconds[f"gc gen{info['generation']}"] = (seconds.get(f"gc gen{info['generation']}", 0.0)
                                                      + time.perf_counter() - collecting.pop())

    gc.callbacks.append(on_collection)
    print(f"{torch.cuda.get_device_name()}, plan {pipe.plan}; the first prompt includes waiting for the text encoder")
    for index in range(args.prompts):
        seconds.clear()
        passes.clear()
        action, then = ACTIONS[index % len(ACTIONS)], ACTIONS[(index + 5) % len(ACTIONS)]
        settings = GenerationSettings([f"a person {action} and then {then} slowly, take {index}"], [5.0], [0])
        faults = page_faults()
        begin = time.perf_counter()
        list(pipe.generate(settings))
        torch.cuda.synchronize()
        parts = ", ".join(f"{label} {value:.3f}" for label, value in seconds.items())
        elapsed = time.perf_counter() - begin
        minor, major = (after - before for after, before in zip(page_faults(), faults))
        print(f"prompt {index + 1:2d}: {elapsed:.3f} s ({parts}; Qwen3 pass of {', '.join(map(str, passes))} tokens; "
              f"page faults {minor} minor, {major} major; weight pages mapped {weight_pages_mapped_mib():.0f} MiB)")
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    print("at the end:", ", ".join(f"{key} {status[key].strip()}" for key in ("VmHWM", "RssAnon", "RssFile")))


if __name__ == "__main__":
    main()
