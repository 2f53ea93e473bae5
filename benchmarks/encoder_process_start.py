"""Would the text encoder in a process of its own bring the first clip under 6 s (issue 13)?

In one process the way to the first clip is a chain of Python that holds the GIL (torch, diffusers and transformers'
imports, the DiT's graph capture, Qwen3's and CLIP's modelling and build: 5.7-7.7 s on the lent H100s, see
docs/performance.md, First click). A second process started with the backend could import transformers, build and
place the text encoder and encode the first prompt on another core, while the first imports diffusers, places the DiT
and captures the default graph. This measures that split before the backend is built around it, with the backend's
own functions on both sides and the embedding handed over through the embedding cache:

- ``encoder``: a process that only builds, places and runs the text encoder (the ``gpu`` plan's early upload too),
- ``dit``: a process that only loads the DiT, captures the default graph and samples from an embedding already cached,
- ``both``: the two started together, the DiT's process sampling as soon as the encoder's embedding is cached.

Every time counts from the process's launch. Needs the random real-size weights ``hymotion bench --work-dir DIR``
writes. Usage (on a CUDA machine): python benchmarks/encoder_process_start.py --work-dir DIR --plans gpu,stream
(``--plans cpu`` runs both sides on the CPU.)

Measured on an H100 (2026-11-26): both together reached the first clip in 7.3-8.5 s, the encoder's side alone its first
embedding in 6.2-8.7 s, so the split was not built (docs/performance.md, Why 6 s is out of reach).
"""

import os
import sys
import time

LAUNCHED = float(os.environ.get("HYMOTION_LAUNCHED", time.time()))

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
from hymotion import weights  # noqa: E402
from hymotion.model.text_encoder import EmbeddingCache, PromptEmbedding  # noqa: E402
from hymotion.pipeline import memory

PROMPT = "a person walks forward and waves"
IDENTITY = "encoder-process-benchmark"
EVENTS: dict[str, float] = {"torch and the light backend modules imported": round(time.time() - LAUNCHED, 3)}


def note(event: str) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    EVENTS[event] = round(time.time() - LAUNCHED, 3)


def run_encoder(files: weights.ModelFiles, plan_name: str, cache: EmbeddingCache) -> None:
    from hymotion.model.text_encoder import EarlyQwenUpload

    device = torch.device("cpu" if plan_name == "cpu" else "cuda")
    early = EarlyQwenUpload(files.qwen_folder, device) if plan_name == "gpu" else None
    from hymotion.pipeline.loading import load_real_text_encoder

    encoder = load_real_text_encoder(files, IDENTITY)
    note("encoder built")
    memory.place_text_encoder(encoder, memory.PLANS[plan_name], device, early.result() if early else None)
    note("encoder placed")
    cache.put(IDENTITY, PROMPT, encoder.encode([PROMPT])[0])
    note("prompt encoded and cached")
    if device.type == "cuda":
        EVENTS["CUDA memory reserved (GiB)"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)


def run_dit(files: weights.ModelFiles, plan_name: str, cache: EmbeddingCache) -> None:
    from hymotion.model.loading import load_model_folder
    from hymotion.pipeline.sampling import MotionPipeline
    from hymotion.shared.jobs import GenerationSettings

    loaded = load_model_folder(files.model_folder)
    note("DiT read")

    def no_text_encoder():
        raise RuntimeError("this process never encodes: the embedding comes from the encoder's process")

    device = "cpu" if plan_name == "cpu" else "cuda"
    pipe = MotionPipeline(loaded, no_text_encoder, IDENTITY, "benchmark", files.variant, plan_name, device, cache)
    pipe.warm_up()
    note("DiT placed and default graph captured")
    while cache.get(IDENTITY, PROMPT) is None:
        time.sleep(0.002)
    note("embedding found")
    list(pipe.generate(GenerationSettings([PROMPT], [5.0], [0])))
    note("first clip")


def launch(role: str, work_dir: Path, plan: str, cache_dir: Path) -> subprocess.Popen:
    environment = {**os.environ, "HYMOTION_LAUNCHED": repr(time.time())}
    command = [sys.executable, __file__, "--role", role, "--work-dir", str(work_dir), "--plans", plan,
               "--cache-dir", str(cache_dir)]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True)


def events_of(process: subprocess.Popen) -> dict[str, float]:
    output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a measured process failed (exit {process.returncode}); its error is above")
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--plans", default="gpu,stream")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--role", choices=("encoder", "dit"), help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    files = weights.locate("lite", args.work_dir)
    if args.role:
        (run_encoder if args.role == "encoder" else run_dit)(files, args.plans, EmbeddingCache(args.cache_dir))
        print(json.dumps(EVENTS))
        return
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"{gpu}, {os.cpu_count()} CPUs; seconds from each process's launch")
    for _ in range(args.repeats):
        for plan in args.plans.split(","):
            alone = Path(tempfile.mkdtemp(prefix="hymotion-encoder-alone-"))
            print(plan, "encoder alone", events_of(launch("encoder", args.work_dir, plan, alone)))
            cached = Path(tempfile.mkdtemp(prefix="hymotion-dit-alone-"))
            config = json.loads((files.model_folder / "transformer" / "config.json").read_text())
            placeholder = PromptEmbedding(torch.randn(24, config["ctxt_input_dim"], dtype=torch.bfloat16),
                                          torch.randn(config["vtxt_input_dim"]))
            EmbeddingCache(cached).put(IDENTITY, PROMPT, placeholder)
            print(plan, "DiT alone", events_of(launch("dit", args.work_dir, plan, cached)))
            together = Path(tempfile.mkdtemp(prefix="hymotion-both-"))
            encoder, dit = (
                launch("encoder", args.work_dir, plan, together), launch("dit", args.work_dir, plan, together)
            )
            print(plan, "both: encoder", events_of(encoder))
            print(plan, "both: DiT", events_of(dit))


if __name__ == "__main__":
    main()
