"""Where a fresh backend's first clip spends its time: every start-up stage run in turn, nothing overlapped.

``hymotion bench`` measures the first clip as a user meets it (stages overlapped); this splits the same work into
stages so each can be attacked. Needs the random real-size weights ``hymotion bench --work-dir DIR`` writes.
Usage (on a CUDA machine): python benchmarks/start_up_profile.py --work-dir DIR --plan stream
"""

import time

STARTED = time.perf_counter()
STAGES: list[tuple[str, float]] = []


def mark(stage: str) -> None:
    STAGES.append((stage, time.perf_counter()))


import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

mark("import torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
from hymotion import weights  # noqa: E402
from hymotion.model.loading import load_model_folder  # noqa: E402
from hymotion.pipeline import loading, memory, sampling

mark("import hymotion.pipeline.sampling (diffusers, transformers' base)")
import transformers.models.clip.modeling_clip  # noqa: E402,F401
import transformers.models.qwen3.modeling_qwen3  # noqa: E402,F401

mark("import Qwen3 and CLIP modelling")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--plan", default="stream", choices=("gpu", "stream"))
    parser.add_argument("--variant", default="lite", choices=("lite", "standard"))
    args = parser.parse_args()
    torch.zeros(1, device="cuda")
    mark("CUDA context")
    folder = args.work_dir / weights.VARIANT_FOLDERS[args.variant]
    loaded = load_model_folder(folder)
    mark("DiT read from disk")
    files = weights.locate_for_folder(folder, args.work_dir)
    encoder = loading.load_real_text_encoder(files, "profile")
    mark("text encoder built (tokenizers, Qwen3 memory-mapped, CLIP read)")
    memory.place_text_encoder(encoder, memory.PLANS[args.plan], torch.device("cuda"))
    torch.cuda.synchronize()
    mark(f"text encoder placed for {args.plan}")
    encoder.encode(["a person walks forward"])
    torch.cuda.synchronize()
    mark("first prompt encoded")
    encoder.encode(["a person jumps"])
    torch.cuda.synchronize()
    mark("second prompt encoded")
    memory.release_text_encoder(encoder)
    pipe = sampling.MotionPipeline(loaded, lambda: encoder, "profile", "profile", args.variant, args.plan, "cuda",
                                   sampling.EmbeddingCache(tempfile.mkdtemp()))
    pipe._text_encoder = encoder
    torch.cuda.synchronize()
    mark("DiT placed on the GPU")
    pipe.warm_up()
    torch.cuda.synchronize()
    mark("default CUDA graph captured")
    settings = sampling.GenerationSettings(["a person waves"], [5.0], [0])
    list(pipe.generate(settings))
    torch.cuda.synchronize()
    mark("first clip of a new prompt (encode, sample, decode)")
    previous = STARTED
    print(f"{torch.cuda.get_device_name()}, plan {args.plan}")
    for stage, at in STAGES:
        print(f"{at - previous:7.2f} s  {stage}")
        previous = at
    print(f"{previous - STARTED:7.2f} s  in all (interpreter start not included)")


if __name__ == "__main__":
    main()
