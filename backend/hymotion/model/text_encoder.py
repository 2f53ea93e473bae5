"""Prompt encoding: Qwen3 token features and the CLIP-L pooled vector, with an on-disk cache.

Qwen3 runs as the base model (no LM head, no per-layer hidden states): its last hidden state after the final norm is
what the official pipeline takes from the causal LM's ``hidden_states[-1]``. Prompts are tokenised with right padding
to the longest prompt of the batch, rounded up to QWEN_TOKEN_MULTIPLE; the causal attention and the padding mask make
each prompt's real-token features independent of that padding, so they equal the official fixed 128-token padding.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..pipeline.layer_streaming import upload_safetensors
from ..shared.files import replacing

log = logging.getLogger(__name__)

QWEN_REPO_ID = "Qwen/Qwen3-8B"
CLIP_REPO_ID = "openai/clip-vit-large-patch14"
MAX_TEXT_TOKENS = 128
# One Qwen pass takes prompts while (prompts x longest padded length) stays under this: about 4 GB of activations per
# 16k tokens on Qwen3-8B in bf16 (MLP and attention of one layer), so a pass peaks near 1 GB however many prompts are
# new. Real prompts are about 100 tokens with the template: some 40 prompts a pass.
MAX_TOKENS_PER_PASS = 4096
# Qwen3's passes are padded to a multiple of this many tokens, so new prompts meet the few lengths an earlier pass has
# set the GPU up for: on the gpu plan each new exact length cost its first pass 0.04-0.1 s more (docs/performance.md).
QWEN_TOKEN_MULTIPLE = 32
CLIP_MAX_TOKENS = 77

# Interface constant the released weights were trained with; it must match byte for byte.
# Source: official repository, hymotion/network/text_encoders/model_constants.py (PROMPT_TEMPLATE_ENCODE_HUMAN_MOTION).
QWEN_MOTION_SYSTEM_PROMPT = (
    "\n    Summarize human motion only from the user text for representation: action categories, key body-part "
    "movements, order/transitions, trajectory/direction, posture; include style/emotion/speed only if present. "
    "Explicitly capture laterality (left/right) when mentioned; do not guess. If multiple actions are described, "
    "indicate the count of distinct actions (e.g., actions=3) and their order. Do not invent missing info. Keep one "
    "concise paragraph.\n"
)
# Stand-in for the user text when locating where the user text starts in the templated tokens.
CROP_MARKER = "<BOC>"


@dataclass
class PromptEmbedding:
    """One prompt's conditioning: Qwen features of its real tokens (T, ctxt_dim) and the CLIP vector (vtxt_dim,)."""

    ctxt: Tensor
    vtxt: Tensor
    truncated: bool = False


def padded_tokens(tokens: int) -> int:
    """The length a Qwen3 pass pads ``tokens`` to."""
    return -(-tokens // QWEN_TOKEN_MULTIPLE) * QWEN_TOKEN_MULTIPLE


def chat_text(tokenizer, prompt: str) -> str:
    messages = [{"role": "system", "content": QWEN_MOTION_SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False, enable_thinking=False)


def find_crop_start(tokenizer) -> int:
    """Number of template tokens before the user text (the official crop), found by templating a marker."""
    full_ids = tokenizer(chat_text(tokenizer, CROP_MARKER), add_special_tokens=True)["input_ids"]
    marker_ids = tokenizer(CROP_MARKER, add_special_tokens=False)["input_ids"]
    for start in range(len(full_ids) - len(marker_ids) + 1):
        if full_ids[start : start + len(marker_ids)] == marker_ids:
            return start
    return max(0, len(full_ids) - 1)


class TextEncoder:
    """Qwen3 base model + CLIP text tower. Placement on devices is the memory plan's business, not this class's."""

    def __init__(
        self, qwen_tokenizer, qwen_model, clip_tokenizer, clip_model, identity: str, official_layout: bool = False
    ) -> None:
        """``official_layout`` reproduces the official cost (causal LM, every layer's hidden state, padding to the
        full length) for benchmarks; the features are the same either way."""
        self.official_layout = official_layout
        self.qwen_tokenizer = qwen_tokenizer
        self.qwen_tokenizer.padding_side = "right"
        self.qwen_model = qwen_model.eval()
        self.clip_tokenizer = clip_tokenizer
        self.clip_model = clip_model.eval()
        self.identity = identity
        self.crop_start = find_crop_start(qwen_tokenizer)
        # The weights as loaded (memory-mapped files for real models): every placement starts again from these.
        self.qwen_host_state = dict(self.qwen_model.state_dict())
        self.clip_host_state = dict(self.clip_model.state_dict())
        self.execution_device = torch.device("cpu")
        self.streamer = None

    def encode(self, prompts: list[str]) -> list[PromptEmbedding]:
        """Prompts in passes of at most MAX_TOKENS_PER_PASS padded tokens, so activations stay bounded."""
        texts = [chat_text(self.qwen_tokenizer, prompt) for prompt in prompts]
        untruncated = self.qwen_tokenizer(texts, add_special_tokens=True)["input_ids"]
        sizes = [padded_tokens(min(len(ids), self.crop_start + MAX_TEXT_TOKENS)) for ids in untruncated]
        embeddings: list[PromptEmbedding] = []
        start = 0
        while start < len(prompts):
            end = start + 1
            while end < len(prompts) and (end + 1 - start) * max(sizes[start : end + 1]) <= MAX_TOKENS_PER_PASS:
                end += 1
            truncated = [len(ids) > self.crop_start + MAX_TEXT_TOKENS for ids in untruncated[start:end]]
            embeddings += self._encode_pass(prompts[start:end], texts[start:end], truncated)
            start = end
        return embeddings

    @torch.no_grad()
    def _encode_pass(self, prompts: list[str], texts: list[str], truncated: list[bool]) -> list[PromptEmbedding]:
        device = self.execution_device
        batch = self.qwen_tokenizer(
            texts,
            truncation=True,
            max_length=self.crop_start + MAX_TEXT_TOKENS,
            padding="max_length" if self.official_layout else "longest",
            return_tensors="pt",
        )
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        if not self.official_layout:  # the tokenizer's own pad_to_multiple_of refuses a truncation length off the grid
            extra = padded_tokens(input_ids.shape[1]) - input_ids.shape[1]
            input_ids = torch.nn.functional.pad(input_ids, (0, extra), value=self.qwen_tokenizer.pad_token_id)
            attention_mask = torch.nn.functional.pad(attention_mask, (0, extra), value=0)
        outputs = self.qwen_model(
            input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
            output_hidden_states=self.official_layout,
        )
        hidden = outputs.hidden_states[-1] if self.official_layout else outputs.last_hidden_state
        lengths = (attention_mask.sum(dim=1) - self.crop_start).clamp(0, MAX_TEXT_TOKENS).tolist()
        clip_batch = self.clip_tokenizer(
            prompts, truncation=True, max_length=CLIP_MAX_TOKENS, padding=True, return_tensors="pt"
        ).to(self._clip_device())
        pooled = self.clip_model(
            input_ids=clip_batch["input_ids"], attention_mask=clip_batch["attention_mask"]
        ).pooler_output
        return [
            PromptEmbedding(
                hidden[index, self.crop_start : self.crop_start + lengths[index]].cpu().clone(),
                pooled[index].float().cpu().clone(), truncated[index],
            )
            for index in range(len(prompts))
        ]

    def _clip_device(self) -> torch.device:
        return next(self.clip_model.parameters()).device


class EmbeddingCache:
    """Prompt embeddings on disk, keyed by encoder identity and prompt, so a prompt is encoded once per machine."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, identity: str, prompt: str) -> Path:
        digest = hashlib.sha256(f"{identity}\0{prompt}".encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.safetensors"

    def get(self, identity: str, prompt: str) -> PromptEmbedding | None:
        path = self._path(identity, prompt)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path)
            return PromptEmbedding(tensors["ctxt"], tensors["vtxt"], bool(tensors["truncated"].item()))
        except Exception as error:
            log.warning("ignoring unreadable cache entry %s: %s", path, error)
            return None

    def put(self, identity: str, prompt: str, embedding: PromptEmbedding) -> None:
        """Safe for several writers (farm workers share one cache folder): each writes its own scratch file and renames
        it into place (hymotion.shared.files), so a reader finds no entry or a whole one, never a mix of two."""
        tensors = {
            "ctxt": embedding.ctxt.contiguous(),
            "vtxt": embedding.vtxt.contiguous(),
            "truncated": torch.tensor(int(embedding.truncated)),
        }
        with replacing(self._path(identity, prompt)) as scratch:
            save_file(tensors, scratch, metadata={"identity": identity})


def encode_with_cache(
    encoder_factory, identity: str, prompts: list[str], cache: EmbeddingCache | None
) -> tuple[list[PromptEmbedding], int]:
    """Embeddings for ``prompts``: cache hits first, then the misses in one pass of the encoder.

    ``encoder_factory`` is called only when something is missing, so cache hits never load or touch the encoder.
    Returns the embeddings and how many prompts were encoded.
    """
    found: dict[str, PromptEmbedding] = {}
    missing: list[str] = []
    for prompt in dict.fromkeys(prompts):
        hit = cache.get(identity, prompt) if cache else None
        if hit is None:
            missing.append(prompt)
        else:
            found[prompt] = hit
    if missing:
        encoded = encoder_factory().encode(missing)
        for prompt, embedding in zip(missing, encoded):
            found[prompt] = embedding
            if cache:
                cache.put(identity, prompt, embedding)
    return [found[prompt] for prompt in prompts], len(missing)


def qwen_base_name(key: str) -> str | None:
    """A Qwen3 weight file's key as the base model names it; None for the causal LM's head, which it lacks."""
    return None if key.startswith("lm_head.") else key.removeprefix("model.")


def load_qwen_base(folder: Path) -> torch.nn.Module:
    """Qwen3 as the base model whose weights ARE the safetensors files' memory maps: nothing is copied into process
    memory, so the weights sit in the page cache (file-backed, evictable) until a plan moves them to the GPU.

    Reads both layouts: the causal LM's (``model.`` prefixes, an ``lm_head`` that is skipped) and the base model's.
    """
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    expected = set(model.state_dict())
    state = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                name = qwen_base_name(key)
                if name in expected:
                    tensor = handle.get_tensor(key)
                    state[name] = tensor if tensor.dtype == torch.bfloat16 else tensor.to(torch.bfloat16)
    rotary = {name for name in expected if name.startswith("rotary_emb.")}
    missing = sorted(expected - rotary - set(state))
    if missing:
        raise FileNotFoundError(f"Qwen3 weights in {folder} lack {', '.join(missing[:4])}")
    model.load_state_dict(state, strict=False, assign=True)
    model.rotary_emb = type(model.rotary_emb)(config=config)
    return model.eval()


class EarlyQwenUpload:
    """The ``gpu`` plan's copy of Qwen3's weights to the GPU, begun on a thread before ``load_pipeline`` imports
    diffusers and transformers: seconds of Python that hold the GIL, beside which the copy (a few large byte ranges,
    ``layer_streaming.upload_safetensors``) runs almost unhindered. ``load_pipeline`` takes the result before it
    places the DiT, so the thread never runs beside graph capture or sampling. A failure only logs; the encoder is then
    uploaded when it loads, as without this."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        self._uploaded: dict[str, Tensor] | None = None
        self._thread = threading.Thread(target=self._run, args=(Path(folder), torch.device(device)),
                                        name="hymotion-qwen-upload", daemon=True)
        self._thread.start()

    def _run(self, folder: Path, device: torch.device) -> None:
        try:
            self._uploaded = upload_safetensors(sorted(folder.glob("*.safetensors")), device, qwen_base_name)
        except Exception as error:  # noqa: BLE001 - never fails the start; the encoder's own loading uploads later
            log.info("uploading Qwen3 ahead of the imports failed (%s: %s); it is uploaded when the text encoder loads",
                     type(error).__name__, error)

    def result(self) -> dict[str, Tensor] | None:
        """Waits for the copy; Qwen3's weights on the GPU keyed as the base model names them, handed over once."""
        self._thread.join()
        uploaded, self._uploaded = self._uploaded, None
        return uploaded
