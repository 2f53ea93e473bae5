"""Execution plans: where each model lives and how it reaches the GPU. The math is the pipeline's; this is placement.

- ``gpu``: everything resident (DiT in bf16, CLIP in fp32, Qwen3 base in bf16). On every GPU plan the DiT step runs
  as a CUDA graph.
- ``partial``: as many of Qwen3's layers as the free VRAM holds stay on the GPU (after the DiT and the working
  memory, :func:`resident_layers`); the rest stream as under ``stream``. CLIP runs on the CPU.
- ``stream``: Qwen3's layers stream through the GPU two at a time from their memory-mapped files (``layer_streaming``);
  CLIP runs on the CPU; only the DiT is resident.
- ``cpu``: no GPU.
The text encoder's host weights are the memory-mapped safetensors files on every plan, so host RAM holds them only as
page cache. ``offload`` (the whole encoder moved to the GPU for each new prompt) was retired: it moved the same bytes
as ``stream`` without overlapping the copies with the compute, held more VRAM and copied the weights into process
memory; the name still works and means ``stream``.
``auto`` picks the fastest plan whose expected peak fits in the free VRAM; a CUDA out-of-memory error steps down one
plan (gpu, partial, stream, cpu). Free VRAM is the device's, or less where :func:`limit_vram` capped this process.
Choosing a plan needs no torch (the service reports it in ``hello`` before loading anything); placing models does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..shared.errors import BAD_REQUEST, HyMotionError

log = logging.getLogger(__name__)

GIB = 1024**3
PLAN_ORDER = ("gpu", "partial", "stream", "cpu")
RETIRED_PLANS = {"offload": "stream"}
PLAN_CHOICES = ("auto",) + PLAN_ORDER + tuple(RETIRED_PLANS)
# Parameter counts at real sizes, for expected-VRAM arithmetic (Qwen3-8B without its LM head; CLIP-L text tower).
QWEN_BASE_PARAMS = 7_570_000_000
QWEN_EMBEDDING_PARAMS = 151_936 * 4096
QWEN_LAYER_PARAMS = (QWEN_BASE_PARAMS - QWEN_EMBEDDING_PARAMS) // 36
CLIP_TEXT_PARAMS = 123_060_480
DIT_PARAMS = {"lite": 460_841_673, "standard": 1_042_868_681}
# Activations and allocator slack while sampling a batch of a few clips, measured headroom rather than derived.
SAMPLING_HEADROOM = int(0.75 * GIB)
# ``auto`` keeps everything resident only when this much is left over for batches and for Blender's own viewport.
GPU_PLAN_SPARE = 2 * GIB
# ``partial`` keeps this much free beside the DiT, its resident layers and the two streaming slots: a pass's
# activations (MAX_TOKENS_PER_PASS tokens, under 1 GB) or a sampling batch (stream's peak is 1.8 GiB over the DiT with
# its slots, docs/performance.md), plus room for the viewport to grow. Below PARTIAL_MIN_RESIDENT layers it is stream.
PARTIAL_WORKING = int(1.5 * GIB)
PARTIAL_MIN_RESIDENT = 4


@dataclass(frozen=True)
class Plan:
    name: str
    text_placement: str  # resident | partial | stream | cpu
    dit_dtype: str  # a torch dtype name
    cuda_graph: bool
    max_batch: int  # samples (prompt x seed) per sampling batch, before CFG doubling

    @property
    def needs_cuda(self) -> bool:
        return self.name != "cpu"


PLANS = {
    "gpu": Plan("gpu", "resident", "bfloat16", cuda_graph=True, max_batch=32),
    "partial": Plan("partial", "partial", "bfloat16", cuda_graph=True, max_batch=8),
    "stream": Plan("stream", "stream", "bfloat16", cuda_graph=True, max_batch=8),
    "cpu": Plan("cpu", "cpu", "float32", cuda_graph=False, max_batch=4),
    # Benchmarks only: placed and computed like the official pipeline (fp32 DiT, one request at a time, no graph).
    "official-baseline": Plan("official-baseline", "resident", "float32", cuda_graph=False, max_batch=64),
}


# The DiT's number format. bf16 halves its memory and runs on tensor cores; fp32 reproduces the official output.
PRECISIONS = {"bf16": "bfloat16", "fp32": "float32"}


def check_precision(precision: str | None) -> None:
    if precision is not None and precision not in PRECISIONS:
        raise HyMotionError(BAD_REQUEST, f"Unknown precision {precision!r}.", f"Use one of {', '.join(PRECISIONS)}.")


def dit_dtype(plan: Plan, precision: str | None = None) -> str:
    """The torch dtype name the DiT runs in: ``precision`` when given, else the plan's own."""
    check_precision(precision)
    return plan.dit_dtype if precision is None else PRECISIONS[precision]


def next_plan(name: str) -> str | None:
    if name not in PLAN_ORDER:
        return None
    index = PLAN_ORDER.index(name)
    return PLAN_ORDER[index + 1] if index + 1 < len(PLAN_ORDER) else None


def expected_vram(plan: str, variant: str = "lite") -> dict[str, int]:
    """Expected peak bytes on the GPU while sampling and while encoding a new prompt."""
    dit = DIT_PARAMS.get(variant, DIT_PARAMS["lite"]) * 2
    qwen = QWEN_BASE_PARAMS * 2
    clip = CLIP_TEXT_PARAMS * 4
    if plan == "gpu":
        sampling = encoding = dit + qwen + clip + SAMPLING_HEADROOM
    elif plan in ("partial", "stream"):
        # partial: at least PARTIAL_MIN_RESIDENT layers and its working memory; it takes what else is free when placed
        resident = PARTIAL_MIN_RESIDENT * QWEN_LAYER_PARAMS * 2 + PARTIAL_WORKING if plan == "partial" else 0
        sampling = dit + SAMPLING_HEADROOM + resident
        encoding = sampling + 2 * QWEN_LAYER_PARAMS * 2  # two streamed layers in bf16
    else:
        sampling = encoding = 0
    return {"sampling": sampling, "encoding": encoding, "peak": max(sampling, encoding)}


_vram_limit: int | None = None


def limit_vram(limit: int) -> None:
    """Cap this process's CUDA memory at ``limit`` bytes, as a smaller card would (``hymotion bench``'s PLAN@GIB):
    allocations past it fail as out-of-memory, and :func:`cuda_memory` reports what is left under it."""
    import torch

    global _vram_limit
    torch.cuda.set_per_process_memory_fraction(limit / torch.cuda.get_device_properties(0).total_memory)
    _vram_limit = int(limit)


def cuda_memory() -> tuple[int, int] | None:
    """(free, total) bytes of the current CUDA device, or None without one; under :func:`limit_vram`, what is left of
    the limit (the allocator counts the memory it has reserved against it)."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    if _vram_limit is not None:
        return int(min(free, _vram_limit - torch.cuda.memory_reserved())), _vram_limit
    return int(free), int(total)


def resident_layers(free: int, layer_bytes: int, layers: int) -> int:
    """How many of ``layers`` text-encoder layers of ``layer_bytes`` each ``partial`` keeps on the GPU, given ``free``
    bytes once the DiT is placed: what is left after the two streaming slots and PARTIAL_WORKING, all of them when
    they fit with no slots at all."""
    if layers * layer_bytes + PARTIAL_WORKING <= free:
        return layers
    return max(0, min(layers, (free - PARTIAL_WORKING - 2 * layer_bytes) // max(1, layer_bytes)))


def choose_plan(requested: str = "auto", variant: str = "lite", memory: tuple[int, int] | None = None) -> str:
    """The plan to run: ``requested`` itself, or for ``auto`` the fastest whose expected peak fits in free VRAM."""
    if requested not in PLAN_CHOICES:
        raise HyMotionError(
            BAD_REQUEST, f"Unknown memory plan {requested!r}.", f"Use one of {', '.join(PLAN_CHOICES)}."
        )
    requested = RETIRED_PLANS.get(requested, requested)
    memory = memory if memory is not None else cuda_memory()
    if requested != "auto":
        if PLANS[requested].needs_cuda and memory is None:
            raise HyMotionError(BAD_REQUEST, f"Plan {requested!r} needs a CUDA GPU, and torch sees none.",
                                "Use --plan cpu (or auto), or install a CUDA build of torch.")
        return requested
    if memory is None:
        return "cpu"
    free, _ = memory
    for name in PLAN_ORDER[:-1]:
        spare = GPU_PLAN_SPARE if name == "gpu" else 0
        if expected_vram(name, variant)["peak"] + spare <= free:
            return name
    return "cpu"


def plan_report(plan: str, variant: str = "lite", device: str | None = None) -> dict:
    """What the user sees: the plan, the device and the VRAM the plan expects."""
    import torch

    memory = cuda_memory()
    expected = expected_vram(plan, variant)
    return {
        "plan": plan,
        "device": device or (torch.cuda.get_device_name() if memory and plan != "cpu" else "cpu"),
        "free_vram": memory[0] if memory else 0,
        "total_vram": memory[1] if memory else 0,
        "expected_vram_sampling": expected["sampling"],
        "expected_vram_encoding": expected["encoding"],
    }


def place_text_encoder(encoder, plan: Plan, device, uploaded: dict | None = None) -> None:
    """Put Qwen3 and CLIP where the plan wants them, starting from their host weights whatever the last plan did.
    ``uploaded``: Qwen3 weights already on ``device`` (``EarlyQwenUpload``), used where they match the host weights."""
    import torch

    from .layer_streaming import LayerStreamer, upload

    if encoder.streamer is not None:
        encoder.streamer.detach()
        encoder.streamer = None
    for model, host_state in (
        (encoder.qwen_model, encoder.qwen_host_state), (encoder.clip_model, encoder.clip_host_state)
    ):
        model.load_state_dict(host_state, assign=True)
        model.to("cpu")  # the buffers that are not in the state dict (rotary tables, position ids); weights stay put
    if plan.text_placement == "resident":
        if torch.device(device).type == "cuda":
            host, target = encoder.qwen_host_state, torch.empty(0, device=device).device  # "cuda" as "cuda:N"
            ready = {name: tensor.to(host[name].dtype) for name, tensor in (uploaded or {}).items()
                     if name in host and tensor.shape == host[name].shape and tensor.device == target}
            rest = {name: tensor for name, tensor in host.items() if name not in ready}
            encoder.qwen_model.load_state_dict({**ready, **(upload(rest, device) if rest else {})}, assign=True)
        encoder.qwen_model.to(device)  # what the state dict leaves out (rotary tables); the weights are there
        encoder.clip_model.to(device)
        encoder.execution_device = torch.device(device)
    elif plan.text_placement in ("partial", "stream"):
        resident = 0
        if plan.text_placement == "partial":
            resident = partial_resident_layers(encoder.qwen_model, device)
        encoder.streamer = LayerStreamer(encoder.qwen_model, device, resident=resident)
        encoder.execution_device = torch.device(device)
    else:
        encoder.execution_device = torch.device("cpu")


def partial_resident_layers(model, device) -> int:
    """``partial``'s resident layer count for ``model`` on ``device``: from the free VRAM on CUDA; on the CPU device
    (tests) PARTIAL_RESIDENT_ON_CPU, half the layers unless set."""
    import torch

    layers = list(model.layers)
    if torch.device(device).type != "cuda":
        return len(layers) // 2 if PARTIAL_RESIDENT_ON_CPU is None else PARTIAL_RESIDENT_ON_CPU
    torch.cuda.empty_cache()  # what an earlier placement left in the allocator's cache counts as free
    memory = cuda_memory()
    assert memory is not None  # the device is a CUDA one, so CUDA is available
    free = memory[0]
    layer_bytes = max(sum(p.nbytes for p in layer.parameters()) for layer in layers)
    count = resident_layers(free, layer_bytes, len(layers))
    log.info("partial plan: %d of %d text-encoder layers resident (%.1f GiB free)", count, len(layers), free / GIB)
    return count


PARTIAL_RESIDENT_ON_CPU: int | None = None


def release_text_encoder(encoder) -> None:
    """After encoding new prompts under ``stream`` or ``partial``: give the two layer slots back to the GPU for
    sampling."""
    import torch

    if encoder.streamer is not None:
        encoder.streamer.release()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "CUDA out of memory" in str(error)
