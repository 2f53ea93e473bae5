"""Prompt to motion: encode (cached), sample with Euler flow matching and CFG, decode.

The sampling math is the official pipeline's: per-seed noise of shape (1, 360, 201) from its own generator, Euler over
``linspace(0, 1, steps + 1)``, guided velocity ``u + s·(c − u)`` where the unconditional branch uses the learned null
CLIP vector and the learned null text token spread over the conditional branch's text positions and mask. What differs
is what is computed: only the requested frames and the real text tokens (exact, see ``model/transformer.py``), several
prompts and seeds in one batch, and a CUDA graph of the DiT step on the GPU plans.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import OrderedDict
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import memory, motion, weights
from .errors import CANCELLED, OUT_OF_MEMORY, HyMotionError
from .jobs import ADVISED_MAX_WORDS, GenerationSettings, frames_for_duration
from .model.loading import LoadedModel, load_model_folder
from .model.text_encoder import EmbeddingCache, PromptEmbedding, TextEncoder, encode_with_cache
from .model.transformer import AttentionLayout, HunyuanMotionMMDiT
from .paths import user_cache_dir

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
GRAPH_CACHE_SIZE = 4
RECENT_EMBEDDINGS = 512
# Clips decode in parallel while the next batch samples: on worker processes when sampling on the GPU (decoding is
# numpy-heavy and would hold the GIL the sampling loop needs), on threads otherwise (no process start-up cost).
DECODE_WORKERS = min(8, os.cpu_count() or 1)


def load_real_text_encoder(files: weights.ModelFiles, identity: str, official_layout: bool = False) -> TextEncoder:
    """Qwen3 as the base model (no LM head) in bf16 and CLIP-L's text tower; ``official_layout`` loads the causal LM
    and keeps every hidden state, as the official pipeline does (benchmarks only)."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, CLIPTextModel

    qwen_class = AutoModelForCausalLM if official_layout else AutoModel
    qwen_tokenizer = AutoTokenizer.from_pretrained(files.qwen_folder, padding_side="right")
    qwen = qwen_class.from_pretrained(files.qwen_folder, dtype=torch.bfloat16)
    clip_tokenizer = AutoTokenizer.from_pretrained(files.clip_folder)
    clip = CLIPTextModel.from_pretrained(files.clip_folder)
    return TextEncoder(qwen_tokenizer, qwen, clip_tokenizer, clip, identity=identity, official_layout=official_layout)


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
        with torch.cuda.graph(self.graph):
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
    ) -> None:
        self.model = model
        self.settings = model.settings
        self._text_encoder_loader = text_encoder_loader
        self._text_encoder: TextEncoder | None = None
        self.encoder_identity = encoder_identity
        self.model_id = model_id
        self.variant = variant
        self.cache = cache
        self.official_padding = official_padding
        self.precision = precision
        self._accelerator = torch.device(device)  # where the GPU plans run; the cpu plan always runs on the CPU
        self.device = self._accelerator
        self._graphs: OrderedDict[tuple, _GraphedStep] = OrderedDict()
        self._recent_embeddings: OrderedDict[str, PromptEmbedding] = OrderedDict()
        self._decoder: Executor | None = None
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
        plan = memory.PLANS[name]
        self.device = self._accelerator if plan.needs_cuda else torch.device("cpu")
        self._graphs.clear()
        # nn.Module.to directly: ModelMixin.to warns about float32-pinned modules this model does not have.
        torch.nn.Module.to(self.model.transformer, self.device, getattr(torch, memory.dit_dtype(plan, self.precision)))
        self.conditioning = {key: value.to(self.device) for key, value in self.model.conditioning.items()}
        self._mean = self.model.conditioning["mean"].double().numpy()
        self._std = self.model.conditioning["std"].double().numpy()
        if self._text_encoder is not None:
            from accelerate.hooks import remove_hook_from_submodules

            for module in (self._text_encoder.qwen_model, self._text_encoder.clip_model):
                remove_hook_from_submodules(module)
            memory.place_text_encoder(self._text_encoder, plan, self.device)
        self.plan = name
        self._plan = plan
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def text_encoder(self) -> TextEncoder:
        if self._text_encoder is None:
            encoder = self._text_encoder_loader()
            memory.place_text_encoder(encoder, self._plan, self.device)
            self._text_encoder = encoder
        return self._text_encoder

    def encode(self, prompts: list[str]) -> list[PromptEmbedding]:
        """Embeddings from memory, then the disk cache, then the text encoder (one pass for all that are missing)."""
        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in self._recent_embeddings]
        if missing:
            embeddings, encoded = encode_with_cache(self.text_encoder, self.encoder_identity, missing, self.cache)
            if encoded and self._text_encoder is not None:
                memory.release_text_encoder(self._text_encoder)
            self._recent_embeddings.update(zip(missing, embeddings))
        for prompt in prompts:
            self._recent_embeddings.move_to_end(prompt)
        while len(self._recent_embeddings) > RECENT_EMBEDDINGS:
            self._recent_embeddings.popitem(last=False)
        return [self._recent_embeddings[prompt] for prompt in prompts]

    def _step_down(self, error: Exception, on_warning: Callable[[str], None]) -> None:
        """After a CUDA out-of-memory error: free memory and move to the next leaner plan (or give up clearly)."""
        if not memory.is_out_of_memory(error):
            raise error
        failed = self.plan
        lower = memory.next_plan(failed)
        self._graphs.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if lower is None:
            raise HyMotionError(OUT_OF_MEMORY, f"Out of memory on plan {failed!r}.", "Close other GPU programs.")
        on_warning(f"Out of GPU memory on plan {failed!r}; retrying on plan {lower!r}.")
        self.switch_plan(lower)

    def _retry_failure(self, error: Exception, tried: str) -> HyMotionError | Exception:
        if memory.is_out_of_memory(error):
            return HyMotionError(
                OUT_OF_MEMORY, f"Out of memory on plan {tried!r} and again on {self.plan!r}.",
                "Close other programs using the GPU, use fewer seeds or prompts per run, or pass --plan cpu.",
            )
        return error

    def _encode_with_step_down(self, prompts: list[str], on_warning: Callable[[str], None]) -> list[PromptEmbedding]:
        try:
            return self.encode(prompts)
        except Exception as error:
            tried = self.plan
            self._step_down(error, on_warning)
        try:
            return self.encode(prompts)
        except Exception as error:
            raise self._retry_failure(error, tried) from None

    def generate(
        self,
        settings: GenerationSettings,
        on_progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> Iterator[motion.MotionClip]:
        """Yield one clip per prompt x seed, each as soon as its batch is decoded."""
        settings.validate()
        progress = on_progress or (lambda stage, step, total: None)
        warn = on_warning or (lambda message: warnings.warn(message, stacklevel=3))
        for index, prompt in enumerate(settings.prompts):
            words = len(prompt.split())
            if words > ADVISED_MAX_WORDS:
                warn(f"Prompt {index + 1} has {words} words; quality drops past {ADVISED_MAX_WORDS} (official advice).")
        unique = list(dict.fromkeys(settings.prompts))
        progress("encoding", 0, len(unique))
        embeddings = dict(zip(unique, self._encode_with_step_down(unique, warn)))
        progress("encoding", len(unique), len(unique))
        for index, prompt in enumerate(settings.prompts):
            if embeddings[prompt].truncated:
                warn(f"Prompt {index + 1} is longer than {self.settings.max_text_tokens} tokens; the end is cut off.")
        samples = [(index, seed) for index in range(len(settings.prompts)) for seed in settings.seeds]
        chunks = [samples[i : i + self._plan.max_batch] for i in range(0, len(samples), self._plan.max_batch)]
        # Each batch decodes in the background while the next one samples; a clip is handed out as soon as it is
        # decoded (between sampling steps), in order.
        pending: list[tuple[Future, tuple[int, int]]] = []
        for chunk_index, chunk in enumerate(chunks):
            run = (chunk, settings, embeddings, progress, should_cancel, chunk_index, len(chunks), pending)
            try:
                latents = yield from self._sample(*run)
            except Exception as error:
                tried = self.plan
                self._step_down(error, warn)
                try:
                    latents = yield from self._sample(*run)
                except Exception as retry_error:
                    raise self._retry_failure(retry_error, tried) from None
            progress("decoding", chunk_index, len(chunks))
            for sample, latent in zip(chunk, latents):
                frames = frames_for_duration(settings.durations[sample[0]])
                decoding = self._decode_executor().submit(
                    motion.decode_latent, latent[:frames], self._mean, self._std, settings.smoothing
                )
                pending.append((decoding, sample))
        while pending:
            yield self._clip(settings, *pending.pop(0))
        progress("decoding", len(chunks), len(chunks))

    def _decode_executor(self) -> Executor:
        if self._decoder is None:
            if self.device.type == "cuda":
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
                self._decoder = ProcessPoolExecutor(max_workers=DECODE_WORKERS, mp_context=context)
            else:
                self._decoder = ThreadPoolExecutor(max_workers=DECODE_WORKERS)
        return self._decoder

    def _clip(self, settings: GenerationSettings, decoding: Future, sample: tuple[int, int]) -> motion.MotionClip:
        index, seed = sample
        translation, rotations, positions = decoding.result()
        return motion.MotionClip(
            translation=translation.astype(np.float32), rotations=rotations.astype(np.float32),
            positions=positions.astype(np.float32), prompt=settings.prompts[index], seed=seed,
            duration=settings.durations[index], model_id=self.model_id, prompt_index=index, plan=self.plan,
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

    def _prepare(
        self, chunk: list[tuple[int, int]], settings: GenerationSettings, embeddings: dict[str, PromptEmbedding]
    ) -> _SampleBatch:
        frames = [frames_for_duration(settings.durations[index]) for index, _ in chunk]
        ctxts = [embeddings[settings.prompts[index]].ctxt for index, _ in chunk]
        motion_len = self.settings.train_frames if self.official_padding else max(frames)
        text_len = self.settings.max_text_tokens if self.official_padding else max(len(c) for c in ctxts)
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
        velocity = self.transformer(model_input, inputs.ctxt, inputs.vtxt, inputs.t, inputs.layout).float()
        if inputs.guided:
            unconditional, conditional = velocity.chunk(2)
            velocity = unconditional + cfg_scale * (conditional - unconditional)
        inputs.x.add_(inputs.dt * velocity)

    def _stepper(self, inputs: _SampleBatch, cfg_scale: float) -> tuple[_SampleBatch, Callable[[], None]]:
        """The buffers to fill and the function that advances them one step (a CUDA graph on the GPU plans)."""
        if not (self._plan.cuda_graph and self.device.type == "cuda"):
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
        chunk: list[tuple[int, int]],
        settings: GenerationSettings,
        embeddings: dict[str, PromptEmbedding],
        progress: ProgressCallback,
        should_cancel: Callable[[], bool] | None,
        chunk_index: int,
        chunk_count: int,
        pending: list[tuple[Future, tuple[int, int]]],
    ) -> Iterator[motion.MotionClip]:
        """Denoise one batch; between steps, hand out the clips of earlier batches whose decoding has finished.

        A generator whose return value is the batch's (B, frames, 201) latents.
        """
        with torch.no_grad():
            state, advance = self._stepper(self._prepare(chunk, settings, embeddings), settings.cfg_scale)
            state.x.copy_(self.initial_noise([seed for _, seed in chunk], state.x.shape[1]))
            times = torch.linspace(0, 1, settings.steps + 1, device=self.device)
        total = settings.steps * chunk_count
        for step in range(settings.steps):
            if should_cancel is not None and should_cancel():
                raise HyMotionError(CANCELLED, "Generation cancelled.", "")
            with torch.no_grad():
                state.t.copy_(times[step].expand_as(state.t))
                state.dt.copy_(times[step + 1] - times[step])
                advance()
            progress("sampling", chunk_index * settings.steps + step + 1, total)
            while pending and pending[0][0].done():
                yield self._clip(settings, *pending.pop(0))
        return state.x.cpu().numpy()


def load_pipeline(
    model: str = "lite",
    model_dir: str | os.PathLike | None = None,
    plan: str = "auto",
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    official_padding: bool = False,
    precision: str | None = None,
) -> MotionPipeline:
    """Build a pipeline for ``model`` (lite, standard, tiny-random, or a model folder) on a memory plan.

    ``device`` forces where plans run (tests pass "cpu" to exercise the GPU plans' placement code on the CPU).
    ``precision`` ("bf16" or "fp32") overrides the plan's DiT number format (bf16 on the GPU plans, fp32 on cpu).
    """
    started = time.perf_counter()
    memory.dit_dtype(memory.PLANS["cpu"], precision)  # an unknown precision fails before any loading
    if model == "tiny-random":
        from .model.tiny import TINY_MODEL_ID, TINY_WARNING, build_tiny_model, build_tiny_text_encoder

        log.warning(TINY_WARNING)
        loaded = build_tiny_model()
        loader, identity, model_id, variant = build_tiny_text_encoder, "tiny-random-0", TINY_MODEL_ID, "lite"
    else:
        if model in weights.VARIANT_FOLDERS:
            files = weights.locate(model, model_dir)
            loaded = load_model_folder(files.model_folder)
        else:
            loaded = load_model_folder(weights.checked_variant_folder(Path(model)))
            files = weights.locate_for_folder(Path(model), model_dir)
        variant = "standard" if loaded.transformer.config.feat_dim >= 1280 else "lite"
        identity = f"{files.qwen_folder.resolve()}|{files.clip_folder.resolve()}|{loaded.settings.max_text_tokens}"
        text_files = files
        loader = lambda: load_real_text_encoder(text_files, identity, official_padding)  # noqa: E731
        model_id = f"HY-Motion-1.0-{variant}" if model in weights.VARIANT_FOLDERS else str(Path(model).resolve())
    if device is None:
        chosen = memory.choose_plan(plan, variant)
        device = "cuda" if memory.PLANS[chosen].needs_cuda else "cpu"
    elif plan == "auto":
        chosen = "cpu" if torch.device(device).type == "cpu" else memory.choose_plan(plan, variant)
    elif plan in memory.PLANS:
        chosen = plan
    else:
        chosen = memory.choose_plan(plan, variant)
    cache = EmbeddingCache(Path(cache_dir) if cache_dir else user_cache_dir() / "embeddings")
    pipeline = MotionPipeline(
        loaded, loader, identity, model_id, variant, chosen, device, cache, official_padding, precision
    )
    log.info("loaded %s on plan %s (%s) in %.1f s", model_id, chosen, device, time.perf_counter() - started)
    return pipeline
