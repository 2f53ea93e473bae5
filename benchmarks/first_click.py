"""The first Generate as a Blender user meets it: the add-on's own client starts the backend service and sends one new
prompt (a 5 s clip), with and without ``--preload`` (the add-on preloads when its panel first opens).

Prints, per plan and mode: start to hello, start to model ready (with preload), and click to clip (the Generate's own
latency once the user clicks: with preload, after the model is ready). ``--cold`` first drops the weight files from
the page cache (as after a reboot: the day's first start), so they are read from disk. Needs the real-size random
weights ``hymotion bench --work-dir DIR`` writes, or downloaded weights (``--model lite``, no ``--work-dir``).
Usage (on a CUDA machine): python benchmarks/first_click.py --work-dir DIR --plans gpu,stream
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "backend"), str(ROOT)]

from hymotion.shared.protocol import DoneEvent  # noqa: E402
from hymotion.weights import VARIANT_FOLDERS  # noqa: E402
from hymotion_addon.core.client import BackendClient, service_args  # noqa: E402

READY_POLL_S = 0.05
TIMEOUT_S = 300.0


def evict_from_page_cache(folder: Path) -> float:
    """Drop every file under ``folder`` from the page cache (Linux; no privileges needed for clean pages); GB."""
    evicted = 0
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as file:
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            evicted += path.stat().st_size
    return evicted / 1e9


def first_click(model: str, model_dir: str | None, plan: str, preload: bool, prompt: str) -> dict:
    client = BackendClient(sys.executable, service_args(model, model_dir, plan, preload=preload))
    started = time.monotonic()
    client.start(TIMEOUT_S)
    hello = time.monotonic() - started
    while preload and client.status().state == "loading":
        time.sleep(READY_POLL_S)
    ready = time.monotonic() - started
    clicked = time.monotonic()
    job = client.submit_generate([prompt], durations=[5.0])
    last = list(client.iter_events(job, timeout=TIMEOUT_S))[-1]
    click_to_clip = time.monotonic() - clicked
    client.shutdown()
    if not isinstance(last, DoneEvent):
        raise RuntimeError(f"the generate ended with {last}")
    return {"hello_s": round(hello, 2), "ready_s": round(ready, 2), "click_to_clip_s": round(click_to_clip, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", help="the folder `hymotion bench --work-dir` wrote the random weights into")
    parser.add_argument("--variant", default="lite", choices=VARIANT_FOLDERS)
    parser.add_argument("--plans", default="gpu,stream")
    parser.add_argument("--cold", action="store_true", help="read the weights from disk: drop them from the page cache "
                        "before each start (needs --work-dir)")
    args = parser.parse_args()
    if args.cold and not args.work_dir:
        parser.error("--cold needs --work-dir (the folder whose files are dropped from the page cache)")
    model = str(Path(args.work_dir) / VARIANT_FOLDERS[args.variant]) if args.work_dir else args.variant
    for number, plan in enumerate(args.plans.split(",")):
        for preload in (False, True):
            if args.cold:
                print(f"dropped {evict_from_page_cache(Path(args.work_dir)):.1f} GB from the page cache", flush=True)
            figures = first_click(model, args.work_dir, plan, preload, f"a person waves, take {number} {preload}")
            print(f"{plan:7} {'preload' if preload else 'lazy   '} {figures}", flush=True)


if __name__ == "__main__":
    main()
