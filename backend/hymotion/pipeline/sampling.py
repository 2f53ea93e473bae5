"""Prompt to motion: encode (cached), sample with Euler flow matching and CFG, decode.

The sampling math is the official pipeline's: per-seed noise of shape (1, 360, 201) from its own generator, Euler over
``linspace(0, 1, steps + 1)``, guided velocity ``u + s·(c − u)`` where the unconditional branch uses the learned null
CLIP vector and the learned null text token spread over the conditional branch's text positions and mask. What differs
is what is computed: only the requested frames and the real text tokens (exact, see ``model/transformer.py``), several
prompts and seeds in one batch, and a CUDA graph of the DiT step on the GPU plans.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import numpy as np
import torch

from ..model.text_encoder import (
    EmbeddingCache,
    PromptEmbedding,
    TextEncoder,
    encode_with_cache,
)
from ..shared.errors import CANCELLED, OUT_OF_MEMORY, HyMotionError
from ..shared.jobs import ADVISED_MAX_WORDS, DEFAULT_CFG, DEFAULT_DURATION, GenerationSettings, frames_for_duration
from . import known_frames as constraints
from . import memory, motion, motion_torch
from .finite import require_finite

if TYPE_CHECKING:  # the models' code imports diffusers, which load_pipeline imports after starting EarlyQwenUpload
    from ..model.loading import LoadedModel
    from ..model.transformer import AttentionLayout, HunyuanMotionMMDiT

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
GRAPH_CACHE_SIZE = 4
# A CUDA graph is captured per shape (about a second each). On the graphed plans lengths are rounded up to these steps,
# so a new prompt or duration replays a graph captured before: padded frames and text tokens are masked keys, which
# changes no result (see model/transformer.py), at the cost of at most a second of frames and 31 tokens more work.
GRAPH_FRAME_STEP = 30
GRAPH_TOKEN_STEP = 32
# Prompt embeddings kept in memory (at most 128 Qwen tokens x 4096 bf16 = 1 MiB each, usually a quarter of that) and
# how many new prompts are encoded together (the text encoder runs them in passes of bounded size): a group always
# fits in memory with room for a batch's repeats.
RECENT_EMBEDDINGS = 512
ENCODE_GROUP = 256
WARM_UP_PROMPT = "a person stands still"
_Result = TypeVar("_Result")


@dataclass
class _SampleBatch:
    """The state and static inputs of one denoising loop. CUDA graphs read and write them by address, so they are
    updated in place: ``x`` (B, frames, 201) is the latent being denoised, ``t`` (rows,) and ``dt`` the step."""

    x: torch.Tensor
    t: torch.Tensor
    dt: torch.Tensor
    ctxt: torch.Tensor
    vtxt: torch.Tensor
    layout: AttentionLayout
    guided: bool

    def update(self, other: "_SampleBatch") -> None:
        for mine, theirs in (
            (self.ctxt, other.ctxt), (self.vtxt, other.vtxt), (self.layout.joint_mask, other.layout.joint_mask),
            (self.layout.refiner_mask, other.layout.refiner_mask), (self.layout.text_valid, other.layout.text_valid),
        ):
            mine.copy_(theirs)


@dataclass
class _LatentConstraint:
    """``constraints.LatentTargets`` of a batch as tensors on the sampling device (see :meth:`put_back`)."""

    target: torch.Tensor  # (B, L, 201) normalised known latents
    weight: torch.Tensor  # (B, L, 201) 1 = pinned, ramp, 0 = free
    nearest: torch.Tensor  # (B, L, 201) index of the pinned frame whose correction each frame takes
    noise: torch.Tensor  # (B, L, 201) the clip's initial noise
    follow: list[tuple[int, int, int]]  # (row, source, frame): frame's target is the running estimate of source
    spread: list[tuple[torch.Tensor, torch.Tensor]]  # (channels, (B, L, L)): partial pins' corrections between frames

    @classmethod
    def build(cls, targets: list[constraints.LatentTargets], noise: torch.Tensor) -> "_LatentConstraint":
        def stack(name: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.stack([getattr(t, name) for t in targets]), dtype=dtype, device=noise.device)

        nearest = stack("nearest", torch.long)[..., None].expand(noise.shape).contiguous()
        follow = [(row, *t.follow) for row, t in enumerate(targets) if t.follow is not None]
        spread = [
            (torch.as_tensor(channels, device=noise.device),
             torch.as_tensor(np.stack([t.spread[group][1] for t in targets]), dtype=noise.dtype, device=noise.device))
            for group, (channels, _) in enumerate(targets[0].spread)
        ]
        return cls(stack("target", noise.dtype), stack("weight", noise.dtype), nearest, noise, follow, spread)

    def put_back(self, x: torch.Tensor, previous: torch.Tensor | None, t: torch.Tensor, t_next: torch.Tensor) -> None:
        """After the step from ``t`` to ``t_next``: pinned frames onto the flow path t·x_known + (1 − t)·noise
        (exactly), the frames beside them moved by their nearest pinned frame's correction times the ramp weight."""
        target = self.target
        if self.follow:
            estimate = previous + (1 - t) * (x - previous) / (t_next - t)  # where this step's velocity ends at t = 1
            target = target.clone()
            for row, source, frame in self.follow:
                target[row, frame] = estimate[row, source]
        path = t_next * target + (1 - t_next) * self.noise
        correction = torch.gather(path - x, 1, self.nearest)
        moved = torch.where(self.weight == 1, path, x + self.weight * correction)
        for channels, matrix in self.spread:  # partial pins: the pinned frames' corrections spread between them
            moved[..., channels] += matrix @ (path - x)[..., channels]
        x.copy_(moved)


class _GraphedStep:
    """One whole Euler step (DiT forward, guidance, update) captured as a CUDA graph: a replay costs a few
    microseconds of CPU time, so the GPU never waits for Python between steps."""

    def __init__(self, step: Callable[[], None], inputs: _SampleBatch) -> None:
        self.inputs = inputs
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the text encoder may be loading onto the GPU from another thread meanwhile (see warm_up)
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            step()

    def __call__(self) -> None:
        self.graph.replay()


class MotionPipeline:
    """HY-Motion text-to-motion with a memory plan. Create with :func:`load_pipeline`."""

    def __init__(
        self,
        model: LoadedModel,
        text_encoder_loader: Callable[[], TextEncoder],
        encoder_identity: str,
        model_id: str,
        variant: str,
        plan: str,
        device: str | torch.device,
        cache: EmbeddingCache | None,
        official_padding: bool = False,
        precision: str | None = None,
        compile_dit: bool = False,
        qwen_uploaded: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.settings = model.settings
        self._text_encoder_loader = text_encoder_loader
        self._text_encoder: TextEncoder | None = None
        self._text_encoder_lock = threading.Lock()
        self.encoder_identity = encoder_identity
        self.model_id = model_id
        self.variant = variant
        self.cache = cache
        self.official_padding = official_padding
        self.precision = precision
        self.compile_dit = compile_dit
        self._accelerator = torch.device(device)  # where the GPU plans run; the cpu plan always runs on the CPU
        self.device = self._accelerator
        self._graphs: OrderedDict[tuple, _GraphedStep] = OrderedDict()
        self._recent_embeddings: OrderedDict[str, PromptEmbedding] = OrderedDict()
        self._qwen_uploaded = qwen_uploaded  # the gpu plan's Qwen3 on the GPU already, for the encoder's placement
        self.plan = ""
        self.switch_plan(plan)

    @property
    def transformer(self) -> HunyuanMotionMMDiT:
        return self.model.transformer

    def describe(self) -> dict:
        report = memory.plan_report(self.plan, self.variant, None if self.device.type == "cuda" else "cpu")
        report.update(model_id=self.model_id, variant=self.variant)
        return report

    def switch_plan(self, name: str) -> None:
        """Place the models for ``name``; also how an out-of-memory error steps down."""
        name = memory.RETIRED_PLANS.get(name, name)
        plan = memory.PLANS[name]
        self.device = self._accelerator if plan.needs_cuda else torch.device("cpu")
        self._graphs.clear()
        # nn.Module.to directly: ModelMixin.to warns about float32-pinned modules this model does not have.
        torch.nn.Module.to(self.model.transformer, self.device, getattr(torch, memory.dit_dtype(plan, self.precision)))
        self.conditioning = {key: value.to(self.device) for key, value in self.model.conditioning.items()}
        self._mean = self.model.conditioning["mean"].double().numpy()
        self._std = self.model.conditioning["std"].double().numpy()
        if self._text_encoder is not None:
            memory.place_text_encoder(self._text_encoder, plan, self.device)
        if plan.text_placement != "resident":
            self._qwen_uploaded = None  # made for gpu: let its GPU copy of Qwen3 go
        self.plan = name
        self._plan = plan
        # torch.compile fuses the elementwise work around the matmuls (norms, modulation, GELU, gates): about 1.6x the
        # throughput of a large batch, after tens of seconds of compiling per shape, so only batch work asks for it.
        use_compiled = self.compile_dit and plan.needs_cuda
        self._forward = compile_dit_forward(self.transformer) if use_compiled else self.transformer
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def text_encoder(self) -> TextEncoder:
        with self._text_encoder_lock:
            if self._text_encoder is None:
                encoder = self._text_encoder_loader()
                uploaded, self._qwen_uploaded = self._qwen_uploaded, None
                memory.place_text_encoder(encoder, self._plan, self.device, uploaded)
                self._text_encoder = encoder
            return self._text_encoder

    def warm_up(self) -> None:
        """Get the first click ready: capture the CUDA graph of the default request (one clip of DEFAULT_DURATION, a
        short prompt), then start loading the text encoder (Qwen3 onto the GPU, or set up for streaming) on a
        background thread. Not both at once: both are Python-bound, and sharing the GIL made them twice as slow as in
        turn (benchmarks/start_up_profile.py). Neither may fail the start: without memory for them, the first request
        captures or loads (and steps down) itself."""
        if not self._graphed:
            return
        config = self.transformer.config
        placeholder = PromptEmbedding(torch.zeros(1, config.ctxt_input_dim), torch.zeros(config.vtxt_input_dim))
        default = GenerationSettings([""], [DEFAULT_DURATION], [0], cfg_scale=DEFAULT_CFG)
        try:
            with torch.no_grad():
                self._stepper(self._prepare([_Sample(0, 0)], default, {"": placeholder}), default.cfg_scale)
        except Exception as error:
            if not memory.is_out_of_memory(error):
                raise
            log.info("no memory to capture the default graph ahead; the first request will: %s", error)
            self._graphs.clear()
            torch.cuda.empty_cache()
        if self._plan.text_placement != "cpu":
            threading.Thread(target=self._load_text_encoder_quietly, name="hymotion-text-encoder", daemon=True).start()

    def prepare_text_encoder(self) -> None:
        """Load the text encoder and run it once on a throw-away prompt (cached nowhere), so the first new prompt pays
        neither the loading nor the set-up of first use (kernel loading, workspaces: 0.4 s on ``gpu``, 1.3 s on
        ``stream`` on an H100). What a preloading backend does before it says it is ready."""
        encoder = self.text_encoder()
        encoder.encode([WARM_UP_PROMPT])
        memory.release_text_encoder(encoder)

    def _load_text_encoder_quietly(self) -> None:
        """Background loading; a failure (say, out of memory) is left to the first encode, which steps down."""
        try:
            self.text_encoder()
        except Exception as error:  # noqa: BLE001 - reported when the first prompt is encoded
            log.info("loading the text encoder ahead failed, retried at the first prompt: %s", error)

    def encode(self, prompts: list[str]) -> list[PromptEmbedding]:
        """Embeddings from memory, then the disk cache, then the text encoder (one pass for all that are missing).

        Memory keeps the most recent RECENT_EMBEDDINGS; the answer is read before older entries are let go, so any
        number of prompts can be asked for (``generate`` asks for at most ENCODE_GROUP at a time).
        """
        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._recent_embeddings]
        if missing:
            embeddings, encoded = encode_with_cache(self.text_encoder, self.encoder_identity, missing, self.cache)
            if encoded and self._text_encoder is not None:
                memory.release_text_encoder(self._text_encoder)
            self._recent_embeddings.update(zip(missing, embeddings))
        for prompt in prompts:
            self._recent_embeddings.move_to_end(prompt)
        answer = [self._recent_embeddings[prompt] for prompt in prompts]
        while len(self._recent_embeddings) > RECENT_EMBEDDINGS:
            self._recent_embeddings.popitem(last=False)
        return answer

    def _with_step_down(self, work: Callable[[], _Result], on_warning: Callable[[str], None]) -> _Result:
        """Run ``work``; after each CUDA out-of-memory error move down the plan ladder (gpu, partial, stream, cpu)
        and run it again, until it completes or the last plan fails too."""
        failed: list[str] = []
        while True:
            try:
                return work()
            except Exception as error:
                if not memory.is_out_of_memory(error):
                    raise
            # Outside the except block, so the error's traceback no longer holds the failed attempt's GPU tensors.
            failed.append(self.plan)
            self._graphs.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            lower = memory.next_plan(self.plan)
            if lower is None:
                raise HyMotionError(
                    OUT_OF_MEMORY, f"Out of memory on plan {' and then '.join(map(repr, failed))}.",
                    "Close other programs using the GPU, use fewer seeds or prompts per run, or pass --plan cpu.",
                )
            on_warning(f"Out of GPU memory on plan {self.plan!r}; retrying on plan {lower!r}.")
            self.switch_plan(lower)

    def generate(
        self,
        settings: GenerationSettings,
        on_progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        on_warning: Callable[[str], None] | None = None,
        constraint: constraints.MotionConstraint | None = None,
    ) -> Iterator[motion.MotionClip]:
        """Yield one clip per prompt x seed, in order, each batch as soon as it is decoded. ``constraint`` pins known
        frames (start, end, loop) for every clip; None samples exactly as the official pipeline."""
        progress = on_progress or (lambda stage, step, total: None)
        warn = on_warning or (lambda message: warnings.warn(message, stacklevel=3))

        # 1. Check inputs.
        settings.validate()
        pinned = None
        if constraint is not None:
            pinned = constraints.prepare(constraint, settings, self._mean, self._std)
            settings = pinned.sample_settings(settings)
            for note in constraint.directions.warnings if constraint.directions is not None else ():
                warn(note)  # a path too fast or a turn too sharp: said, and the motion is still made
        for index, prompt in enumerate(settings.prompts):
            words = len(prompt.split())
            if words > ADVISED_MAX_WORDS:
                warn(f"Prompt {index + 1} has {words} words; quality drops past {ADVISED_MAX_WORDS} (official advice).")

        # 2. Plan the batches: every prompt x seed, in order, as many per batch as the plan allows.
        batches = _plan_batches(settings, self._plan.max_batch)
        encoding = _EncodingGroups(settings.prompts)
        warned_truncation: set[int] = set()
        for number, batch in enumerate(batches):
            # 3. Encode: the next group of new prompts in one encoder pass, so memory holds a group, not the list.
            while encoding.missing_for(batch):
                group = encoding.next_group()
                progress("encoding", encoding.encoded - len(group), encoding.total)
                self._with_step_down(lambda: self.encode(group), warn)
                progress("encoding", encoding.encoded, encoding.total)
            prompts = [settings.prompts[sample.prompt_index] for sample in batch]
            embeddings = dict(zip(prompts, self.encode(prompts)))
            for index in dict.fromkeys(sample.prompt_index for sample in batch):
                if index not in warned_truncation and embeddings[settings.prompts[index]].truncated:
                    warned_truncation.add(index)
                    warn(f"Prompt {index + 1} is longer than {self.settings.max_text_tokens} tokens; "
                         "the end is cut off.")

            # 4. Denoise the batch (Euler steps of the guided velocity).
            latents = self._with_step_down(
                lambda: self._sample(
                    batch, settings, embeddings, progress, should_cancel, number, len(batches), pinned
                ),
                warn,
            )

            # 5. Decode on the sampling device and hand the clips out (pinned poses met exactly, moved to the world).
            progress("decoding", number, len(batches))
            if pinned is None:
                for clip in self._decode(batch, latents, settings):
                    require_finite(clip)
                    yield clip
            else:
                for clip in self._decode(batch, latents, settings, align_ground=pinned.align_ground):
                    clip = pinned.finish(clip, pinned.durations[clip.prompt_index])
                    require_finite(clip, known_frames=True)
                    yield clip
        progress("decoding", len(batches), len(batches))

    def _decode(
        self, batch: list[_Sample], latents: torch.Tensor, settings: GenerationSettings, align_ground: bool = True
    ) -> Iterator[motion.MotionClip]:
        """Clips of equal length decode together: in torch on the device for the GPU plans, in numpy on the cpu plan."""
        frames = [frames_for_duration(settings.durations[sample.prompt_index]) for sample in batch]
        decoded: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for length in dict.fromkeys(frames):
            rows = [row for row, count in enumerate(frames) if count == length]
            same_length = latents[rows, :length]
            if self._plan.needs_cuda:
                arrays = motion_torch.decode_latents(
                    same_length, self.conditioning["mean"], self.conditioning["std"], settings.smoothing, align_ground
                )
            else:
                arrays = motion.decode_latent(
                    same_length.cpu().numpy(), self._mean, self._std, settings.smoothing, align_ground
                )
            for position, row in enumerate(rows):
                decoded[row] = tuple(array[position].astype(np.float32) for array in arrays)
        for row, sample in enumerate(batch):
            translation, rotations, positions = decoded[row]
            yield motion.MotionClip(
                translation=translation, rotations=rotations, positions=positions,
                prompt=settings.prompts[sample.prompt_index], seed=sample.seed,
                duration=settings.durations[sample.prompt_index], model_id=self.model_id,
                prompt_index=sample.prompt_index, plan=self.plan,
            )

    def initial_noise(self, seeds: list[int], frames: int) -> torch.Tensor:
        """Official noise: one generator per seed on the sampling device, randn (1, train_frames, 201), first frames."""
        train_frames = self.settings.train_frames
        latent_dim = self.transformer.config.input_dim
        draws = []
        for seed in seeds:
            generator = torch.Generator(device=self.device).manual_seed(seed)
            draws.append(torch.randn((1, train_frames, latent_dim), generator=generator, device=self.device))
        return torch.cat(draws)[:, :frames]

    @property
    def _graphed(self) -> bool:
        return self._plan.cuda_graph and self.device.type == "cuda"

    def _prepare(
        self, chunk: list[_Sample], settings: GenerationSettings, embeddings: dict[str, PromptEmbedding]
    ) -> _SampleBatch:
        frames = [frames_for_duration(settings.durations[index]) for index, _ in chunk]
        ctxts = [embeddings[settings.prompts[index]].ctxt for index, _ in chunk]
        motion_len = self.settings.train_frames if self.official_padding else max(frames)
        text_len = self.settings.max_text_tokens if self.official_padding else max(len(c) for c in ctxts)
        if self._graphed:
            motion_len = min(-(-motion_len // GRAPH_FRAME_STEP) * GRAPH_FRAME_STEP, self.settings.train_frames)
            text_len = min(-(-text_len // GRAPH_TOKEN_STEP) * GRAPH_TOKEN_STEP, self.settings.max_text_tokens)
        batch = len(chunk)
        dim = ctxts[0].shape[-1]
        ctxt = torch.zeros(batch, text_len, dim, dtype=torch.float32)
        text_valid = torch.zeros(batch, text_len, dtype=torch.bool)
        for row, features in enumerate(ctxts):
            ctxt[row, : len(features)] = features.float()
            text_valid[row, : len(features)] = True
        vtxt = torch.stack([embeddings[settings.prompts[index]].vtxt.float() for index, _ in chunk])[:, None]
        motion_valid = torch.arange(motion_len)[None] < torch.tensor(frames)[:, None]
        guided = settings.cfg_scale > 1.0
        if guided:
            null_ctxt = self.conditioning["null_ctxt_input"].float().cpu()
            null_vtxt = self.conditioning["null_vtxt_feat"].float().cpu()
            uncond_ctxt = null_ctxt.expand(batch, text_len, dim) if self.settings.enable_ctxt_null_feat else ctxt
            ctxt = torch.cat([uncond_ctxt, ctxt])
            vtxt = torch.cat([null_vtxt.expand_as(vtxt), vtxt])
            text_valid = torch.cat([text_valid, text_valid])
            motion_valid = torch.cat([motion_valid, motion_valid])
        device, dtype = self.device, self.transformer.dtype
        layout = self.transformer.build_layout(motion_valid.to(device), text_valid.to(device))
        return _SampleBatch(
            x=torch.zeros(batch, motion_len, self.transformer.config.input_dim, device=device),
            t=torch.zeros(len(ctxt), device=device),
            dt=torch.zeros((), device=device),
            ctxt=ctxt.to(device, dtype),
            vtxt=vtxt.to(device, dtype),
            layout=layout,
            guided=guided,
        )

    def _euler_step(self, inputs: _SampleBatch, cfg_scale: float) -> None:
        """x <- x + dt·v, with v the guided velocity u + s·(c − u) (unconditional rows first)."""
        model_input = torch.cat([inputs.x, inputs.x]) if inputs.guided else inputs.x
        velocity = self._forward(model_input, inputs.ctxt, inputs.vtxt, inputs.t, inputs.layout).float()
        if inputs.guided:
            unconditional, conditional = velocity.chunk(2)
            velocity = unconditional + cfg_scale * (conditional - unconditional)
        inputs.x.add_(inputs.dt * velocity)

    def _stepper(self, inputs: _SampleBatch, cfg_scale: float) -> tuple[_SampleBatch, Callable[[], None]]:
        """The buffers to fill and the function that advances them one step (a CUDA graph on the GPU plans)."""
        if not self._graphed:
            return inputs, lambda: self._euler_step(inputs, cfg_scale)
        key = (tuple(inputs.x.shape), tuple(inputs.ctxt.shape), inputs.guided, cfg_scale)
        step = self._graphs.get(key)
        if step is None:
            step = _GraphedStep(lambda: self._euler_step(inputs, cfg_scale), inputs)
            self._graphs[key] = step
            while len(self._graphs) > GRAPH_CACHE_SIZE:
                self._graphs.popitem(last=False)
        else:
            step.inputs.update(inputs)
            self._graphs.move_to_end(key)
        return step.inputs, step

    def _sample(
        self,
        chunk: list[_Sample],
        settings: GenerationSettings,
        embeddings: dict[str, PromptEmbedding],
        progress: ProgressCallback,
        should_cancel: Callable[[], bool] | None,
        chunk_index: int,
        chunk_count: int,
        pinned: constraints.PreparedConstraint | None = None,
    ) -> torch.Tensor:
        """Denoise one batch from its seeds' noise; returns the (B, frames, 201) latents on the sampling device.

        With ``pinned``, the known frames are put back after every step. On the GPU plans that runs eagerly between
        replays of the captured step, on the same static buffer: a few elementwise kernels per step, while the graph
        (and its cache key) stays the unconstrained one, so constrained and free batches share graphs.
        """
        with torch.no_grad():
            state, advance = self._stepper(self._prepare(chunk, settings, embeddings), settings.cfg_scale)
            noise = self.initial_noise([sample.seed for sample in chunk], state.x.shape[1])
            state.x.copy_(noise)
            times = torch.linspace(0, 1, settings.steps + 1, device=self.device)
            known = None
            if pinned is not None:
                frames = [frames_for_duration(settings.durations[sample.prompt_index]) for sample in chunk]
                targets = [pinned.latent_targets(count, state.x.shape[1]) for count in frames]
                known = _LatentConstraint.build(targets, noise)
        total = settings.steps * chunk_count
        for step in range(settings.steps):
            if should_cancel is not None and should_cancel():
                raise HyMotionError(CANCELLED, "Generation cancelled.", "")
            with torch.no_grad():
                state.t.copy_(times[step].expand_as(state.t))
                state.dt.copy_(times[step + 1] - times[step])
                previous = state.x.clone() if known is not None and known.follow else None
                advance()
                if known is not None:
                    known.put_back(state.x, previous, times[step], times[step + 1])
            progress("sampling", chunk_index * settings.steps + step + 1, total)
        return state.x.clone()


def compile_dit_forward(transformer: HunyuanMotionMMDiT) -> Callable:
    """The DiT's forward through ``torch.compile``; compiled at its first call (inside the graph warm-up, never during
    a capture). The first shape compiles static; a later one recompiles once with its lengths dynamic."""
    return torch.compile(transformer)


class _Sample(NamedTuple):
    prompt_index: int
    seed: int


def _plan_batches(settings: GenerationSettings, max_batch: int) -> list[list[_Sample]]:
    samples = [_Sample(index, seed) for index in range(len(settings.prompts)) for seed in settings.seeds]
    return [samples[start : start + max_batch] for start in range(0, len(samples), max_batch)]


class _EncodingGroups:
    """The distinct prompts of a job in groups of ENCODE_GROUP, encoded in order as the batches reach them."""

    def __init__(self, prompts: list[str]) -> None:
        self._distinct = list(dict.fromkeys(prompts))
        self._group_of = {prompt: position // ENCODE_GROUP for position, prompt in enumerate(self._distinct)}
        self._prompts = prompts
        self.total = len(self._distinct)
        self.encoded = 0

    def missing_for(self, batch: list[_Sample]) -> bool:
        needed = max(self._group_of[self._prompts[sample.prompt_index]] for sample in batch)
        return needed * ENCODE_GROUP >= self.encoded

    def next_group(self) -> list[str]:
        group = self._distinct[self.encoded : self.encoded + ENCODE_GROUP]
        self.encoded += len(group)
        return group


