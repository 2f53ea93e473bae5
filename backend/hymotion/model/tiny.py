"""A tiny HY-Motion with every weight random, built offline in about a second: for smoke runs and tests.

Its motion is noise. It has the real architecture at toy sizes (DiT, a Qwen3 base model, a CLIP text tower) and a
byte-level BPE tokenizer trained on the spot, with a chat template laid out like Qwen's, so every code path of the real
pipeline (template cropping, padding, masks, CFG, caching) runs unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

from .loading import LoadedModel, PipelineSettings
from .text_encoder import TextEncoder
from .transformer import HunyuanMotionMMDiT

TINY_MODEL_ID = "tiny-random"
TINY_WARNING = "tiny-random model: every weight is random, the motion is NOISE (for smoke runs and tests only)"
TINY_DIT_CONFIG: dict[str, Any] = dict(
    feat_dim=32, num_layers=3, num_heads=2, mlp_ratio=2.0, ctxt_input_dim=24, vtxt_input_dim=16
)
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|startoftext|>"]
_QWEN_STYLE_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
)
_CORPUS = [
    "a person walks forward then turns left and waves with the right hand",
    "someone jumps twice, squats down, stands up from the chair and stretches both arms",
    "Summarize human motion only from the user text for representation: action categories, key body-part movements",
    "the man runs in a circle, kicks with the left leg, bows, claps, dances and sits on the floor",
]


def randomize_parameters(module: torch.nn.Module, generator: torch.Generator, scale: float = 0.3) -> None:
    """Give every parameter a random value, the zero-initialised modulation layers included.

    Norm scales are drawn around 1 so activations stay in range while still being exercised.
    """
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            is_norm_scale = parameter.ndim == 1 and ("norm" in name or "layer_norm" in name) and name.endswith("weight")
            if is_norm_scale:
                value = 1.0 + 0.2 * noise
            elif parameter.ndim >= 2:
                value = noise * scale / parameter.shape[-1] ** 0.5
            else:
                value = noise * 0.1
            parameter.copy_(value.to(parameter.dtype))


def build_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=_SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|startoftext|>"
    )
    wrapped.chat_template = _QWEN_STYLE_CHAT_TEMPLATE
    return wrapped


def build_clip_tokenizer() -> PreTrainedTokenizerFast:
    """Same vocabulary; like CLIP's, it wraps the text in start/end tokens (CLIP pools at the end token)."""
    from tokenizers import processors

    tokenizer = build_tokenizer()
    backend = tokenizer.backend_tokenizer
    start, end = tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", start), ("<|endoftext|>", end)]
    )
    tokenizer.pad_token = "<|im_end|>"
    return tokenizer


def build_tiny_text_encoder(seed: int = 0) -> TextEncoder:
    generator = torch.Generator().manual_seed(seed + 1)
    qwen_tokenizer = build_tokenizer()
    qwen_config = Qwen3Config(
        vocab_size=len(qwen_tokenizer), hidden_size=TINY_DIT_CONFIG["ctxt_input_dim"], intermediate_size=48,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=12, max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    qwen = Qwen3Model(qwen_config)
    randomize_parameters(qwen, generator, scale=1.0)
    clip_tokenizer = build_clip_tokenizer()
    clip_config = CLIPTextConfig(
        vocab_size=len(clip_tokenizer), hidden_size=TINY_DIT_CONFIG["vtxt_input_dim"], intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
        eos_token_id=clip_tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=clip_tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        pad_token_id=clip_tokenizer.pad_token_id,
    )
    clip = CLIPTextModel(clip_config)
    randomize_parameters(clip, generator, scale=1.0)
    return TextEncoder(
        qwen_tokenizer, qwen.to(torch.bfloat16), clip_tokenizer, clip, identity=f"{TINY_MODEL_ID}-{seed}"
    )


def build_tiny_model(seed: int = 0) -> LoadedModel:
    generator = torch.Generator().manual_seed(seed)
    transformer = HunyuanMotionMMDiT(**TINY_DIT_CONFIG)
    randomize_parameters(transformer, generator)
    latent_dim = transformer.config.input_dim
    conditioning = {
        "null_vtxt_feat": torch.randn(1, 1, TINY_DIT_CONFIG["vtxt_input_dim"], generator=generator),
        "null_ctxt_input": torch.randn(1, 1, TINY_DIT_CONFIG["ctxt_input_dim"], generator=generator),
        "mean": torch.randn(latent_dim, generator=generator) * 0.1,
        "std": torch.rand(latent_dim, generator=generator) * 0.5 + 0.05,
    }
    return LoadedModel(transformer.eval(), conditioning, PipelineSettings())
