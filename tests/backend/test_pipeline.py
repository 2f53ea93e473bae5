"""The sampling story of one generation: seeds, CFG, exact trimming, the embedding cache, warnings, progress, cancel.

All on the tiny random model and the fp32 cpu plan, where results can be compared tightly.
"""

import numpy as np
import pytest
import torch
from backend_helpers import settings

from hymotion.model.text_encoder import EmbeddingCache
from hymotion.pipeline import motion
from hymotion.pipeline import sampling as pipeline_module
from hymotion.pipeline.loading import load_pipeline
from hymotion.pipeline.sampling import MotionPipeline
from hymotion.shared.errors import CANCELLED, HyMotionError
from hymotion.shared.jobs import frames_for_duration

FIELDS = ("translation", "rotations", "positions")
# Batching changes fp32 summation order (about 1e-6 in the latent); decoding the tiny model's noise latents, whose
# rot6d columns are often nearly parallel, amplifies that to a few 1e-5 in the quaternions.
FP32_DECODED = 1e-4


def generate(pipeline, **options):
    return list(pipeline.generate(settings(**options)))


def assert_clips_close(actual, expected, atol=FP32_DECODED):
    for name in FIELDS:
        np.testing.assert_allclose(getattr(actual, name), getattr(expected, name), atol=atol, err_msg=name)


def clips_differ(a, b) -> bool:
    return not np.allclose(a.positions, b.positions, atol=1e-3)


def test_same_seed_gives_the_same_clip_and_another_seed_another(tiny_pipeline):
    first = generate(tiny_pipeline, seeds=(3,), steps=4)[0]
    again = generate(tiny_pipeline, seeds=(3,), steps=4)[0]
    other = generate(tiny_pipeline, seeds=(4,), steps=4)[0]
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert clips_differ(first, other)
    assert (first.seed, other.seed) == (3, 4)


def test_noise_is_one_official_draw_per_seed(tiny_pipeline):
    frames = 45
    batch = tiny_pipeline.initial_noise([5, 9, 5], frames)
    assert batch.shape == (3, frames, 201)
    for row, seed in enumerate([5, 9, 5]):
        official = torch.randn((1, 360, 201), generator=torch.Generator().manual_seed(seed))[:, :frames]
        torch.testing.assert_close(batch[row : row + 1], official, atol=0, rtol=0)
    torch.testing.assert_close(tiny_pipeline.initial_noise([9], frames)[0], batch[1], atol=0, rtol=0)


def test_batched_prompts_and_seeds_equal_one_at_a_time_runs(tiny_pipeline):
    prompts, durations, seeds = ("a person walks forward", "someone jumps twice"), (2.0, 3.1), (0, 1)
    batched = generate(tiny_pipeline, prompts=prompts, durations=durations, seeds=seeds, steps=4)
    assert [(clip.prompt_index, clip.seed) for clip in batched] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for clip in batched:
        assert clip.frames == frames_for_duration(durations[clip.prompt_index])
        duration = durations[clip.prompt_index]
        alone = generate(tiny_pipeline, prompts=(clip.prompt,), durations=(duration,), seeds=(clip.seed,), steps=4)[0]
        assert_clips_close(clip, alone)


def manual_sampling(pipeline, prompt: str, seed: int, duration: float, steps: int, cfg: float):
    """The official Euler loop written out: conditional branch, and for CFG the null CLIP vector plus the null text
    token spread over the prompt's text positions (same mask)."""
    model = pipeline.transformer
    frames = frames_for_duration(duration)
    embedding = pipeline.encode([prompt])[0]
    tokens = len(embedding.ctxt)
    conditioning = pipeline.model.conditioning
    cond = (embedding.ctxt.float()[None], embedding.vtxt.float().reshape(1, 1, -1))
    null_text = conditioning["null_ctxt_input"].float().expand(1, tokens, -1)
    null = (null_text, conditioning["null_vtxt_feat"].float().reshape(1, 1, -1))
    layout = model.build_layout(torch.ones(1, frames, dtype=torch.bool), torch.ones(1, tokens, dtype=torch.bool))
    x = torch.randn((1, 360, 201), generator=torch.Generator().manual_seed(seed))[:, :frames]
    times = torch.linspace(0, 1, steps + 1)
    with torch.no_grad():
        for step in range(steps):
            t = times[step].expand(1)
            velocity = model(x, *cond, t, layout)
            if cfg > 1.0:
                unconditional = model(x, *null, t, layout)
                velocity = unconditional + cfg * (velocity - unconditional)
            x = x + (times[step + 1] - times[step]) * velocity
    mean, std = (conditioning[key].double().numpy() for key in ("mean", "std"))
    return motion.decode_latent(x[0].numpy(), mean, std, smoothing=False)


@pytest.mark.parametrize("cfg", [1.0, 5.0])
def test_sampling_follows_the_official_euler_loop_with_and_without_guidance(tiny_pipeline, cfg):
    prompt, seed, duration, steps = "a person waves with the right hand", 2, 1.5, 4
    clip = generate(tiny_pipeline, prompts=(prompt,), durations=(duration,), seeds=(seed,), steps=steps, cfg=cfg,
                    smoothing=False)[0]
    translation, rotations, positions = manual_sampling(tiny_pipeline, prompt, seed, duration, steps, cfg)
    np.testing.assert_allclose(clip.translation, translation, atol=FP32_DECODED)
    np.testing.assert_allclose(clip.rotations, rotations, atol=FP32_DECODED)
    np.testing.assert_allclose(clip.positions, positions, atol=FP32_DECODED)


def test_guidance_on_and_off_give_different_motion(tiny_pipeline):
    guided = generate(tiny_pipeline, cfg=5.0, steps=4)[0]
    unguided = generate(tiny_pipeline, cfg=1.0, steps=4)[0]
    assert clips_differ(guided, unguided)


def test_official_padding_gives_the_same_clips_as_the_trimmed_run(tiny_pipeline, monkeypatch):
    options = dict(prompts=("a person walks forward", "someone jumps twice then waves"), durations=(1.0, 2.5),
                   seeds=(0, 7), steps=3)
    trimmed = generate(tiny_pipeline, **options)
    monkeypatch.setattr(tiny_pipeline, "official_padding", True)
    padded = generate(tiny_pipeline, **options)
    for a, b in zip(trimmed, padded, strict=True):
        assert (a.prompt_index, a.seed) == (b.prompt_index, b.seed)
        assert_clips_close(a, b)


class CountingEncoder:
    """Wraps the tiny text encoder and counts how often prompts are encoded."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.encoded: list[str] = []

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, prompts):
        self.encoded += prompts
        return self.encoder.encode(prompts)


def pipeline_with_cache(tiny_pipeline, cache_dir, identity="tiny-random-0"):
    """A second pipeline on the same tiny model whose text encoder counts its calls and loads."""
    counter = CountingEncoder(tiny_pipeline.text_encoder())
    loads = []

    def loader():
        loads.append(identity)
        return counter

    pipeline = MotionPipeline(
        tiny_pipeline.model, loader, identity, tiny_pipeline.model_id, "lite", "cpu", "cpu", EmbeddingCache(cache_dir)
    )
    return pipeline, counter, loads


def test_second_generate_of_a_prompt_does_not_encode_again(tiny_pipeline, tmp_path):
    pipeline, counter, _ = pipeline_with_cache(tiny_pipeline, tmp_path)
    prompt = "a person stretches both arms"
    generate(pipeline, prompts=(prompt,), steps=1)
    generate(pipeline, prompts=(prompt, prompt), durations=(2.0, 1.0), steps=1)
    assert counter.encoded == [prompt]


def test_embedding_cache_on_disk_is_shared_and_keyed_by_encoder_identity(tiny_pipeline, tmp_path):
    prompt = "the man bows and claps"
    first, counter, _ = pipeline_with_cache(tiny_pipeline, tmp_path)
    reference = generate(first, prompts=(prompt,), steps=2)[0]
    assert counter.encoded == [prompt]
    assert len(list(tmp_path.rglob("*.safetensors"))) == 1

    second, _, loads = pipeline_with_cache(tiny_pipeline, tmp_path)
    assert_clips_close(generate(second, prompts=(prompt,), steps=2)[0], reference, atol=0)
    assert loads == [], "a cache hit must not even load the text encoder"

    other, other_counter, _ = pipeline_with_cache(tiny_pipeline, tmp_path, identity="another-encoder")
    generate(other, prompts=(prompt,), steps=2)
    assert other_counter.encoded == [prompt]
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2


def test_prompt_over_128_tokens_is_cut_with_a_warning(tiny_pipeline):
    long_prompt = "zq" * 300  # one word, hundreds of tokens
    warnings = []
    list(tiny_pipeline.generate(settings(prompts=(long_prompt,), steps=1), on_warning=warnings.append))
    assert any("longer than 128 tokens" in message for message in warnings)
    assert not any("words" in message for message in warnings)
    embedding = tiny_pipeline.encode([long_prompt])[0]
    assert embedding.truncated and embedding.ctxt.shape[0] == 128


def test_prompt_over_60_words_warns_that_quality_drops(tiny_pipeline):
    warnings = []
    list(tiny_pipeline.generate(settings(prompts=(" ".join(["a"] * 61),), steps=1), on_warning=warnings.append))
    assert any("61 words" in message for message in warnings)
    assert not any("tokens" in message for message in warnings)
    quiet = []
    list(tiny_pipeline.generate(settings(prompts=(" ".join(["a"] * 60),), steps=1), on_warning=quiet.append))
    assert quiet == []


def test_progress_reports_encoding_every_sampling_step_then_decoding(tiny_pipeline):
    events = []
    clips = list(tiny_pipeline.generate(settings(steps=3), on_progress=lambda *event: events.append(event)))
    assert len(clips) == 1
    assert events == [
        ("encoding", 0, 1), ("encoding", 1, 1),
        ("sampling", 1, 3), ("sampling", 2, 3), ("sampling", 3, 3),
        ("decoding", 0, 1), ("decoding", 1, 1),
    ]


def test_progress_counts_steps_across_batches(tiny_pipeline):
    events = []
    prompts = ("a person walks", "someone jumps", "a man sits down")
    clips = list(tiny_pipeline.generate(settings(prompts=prompts, durations=(1.0,), seeds=(0, 1), steps=2),
                                        on_progress=lambda *event: events.append(event)))
    assert len(clips) == 6
    chunks = -(-6 // tiny_pipeline._plan.max_batch)
    sampling = [event for event in events if event[0] == "sampling"]
    assert sampling == [("sampling", step, 2 * chunks) for step in range(1, 2 * chunks + 1)]
    assert events[-1] == ("decoding", chunks, chunks)
    assert [stage for stage, *_ in events].index("sampling") > [stage for stage, *_ in events].index("encoding")


def test_cancel_stops_within_one_sampling_step(tiny_pipeline):
    events = []

    def on_progress(*event):
        events.append(event)

    def should_cancel():
        return ("sampling", 2, 10) in events

    with pytest.raises(HyMotionError) as caught:
        list(tiny_pipeline.generate(settings(steps=10), on_progress=on_progress, should_cancel=should_cancel))
    assert caught.value.code == CANCELLED
    assert [event for event in events if event[0] == "sampling"] == [("sampling", 1, 10), ("sampling", 2, 10)]
    assert not any(stage == "decoding" for stage, *_ in events)


def test_more_distinct_prompts_than_memory_holds_complete_in_order(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_module, "RECENT_EMBEDDINGS", 6)
    monkeypatch.setattr(pipeline_module, "ENCODE_GROUP", 4)
    pipeline, counter, _ = pipeline_with_cache(tiny_pipeline, tmp_path)
    distinct = [f"a person walks {count} steps" for count in range(15)]
    prompts = distinct + distinct[:2]  # two repeats, long evicted from memory by the time they come up again
    held = []
    original_encode = pipeline.encode

    def encode_and_measure(batch):
        answer = original_encode(batch)
        held.append(len(pipeline._recent_embeddings))
        return answer

    monkeypatch.setattr(pipeline, "encode", encode_and_measure)
    clips = generate(pipeline, prompts=prompts, durations=(1.0,), seeds=(0,), steps=1)
    assert [clip.prompt for clip in clips] == prompts
    assert counter.encoded == distinct, "each distinct prompt encoded once, in groups, repeats read back from disk"
    assert max(held) <= 6


def test_graph_shape_buckets_pad_frames_and_tokens_without_changing_the_motion(tiny_pipeline, monkeypatch):
    options = dict(prompts=("a person walks forward", "someone jumps twice then waves"), durations=(1.0, 2.5),
                   seeds=(0, 7), steps=3)
    exact = generate(tiny_pipeline, **options)
    shapes = []
    prepare = MotionPipeline._prepare

    def recording_prepare(self, *args):
        batch = prepare(self, *args)
        shapes.append((batch.x.shape[1], batch.ctxt.shape[1]))
        return batch

    monkeypatch.setattr(MotionPipeline, "_graphed", property(lambda self: True))
    eager = lambda self, inputs, cfg: (inputs, lambda: self._euler_step(inputs, cfg))  # noqa: E731
    monkeypatch.setattr(MotionPipeline, "_stepper", eager)
    monkeypatch.setattr(MotionPipeline, "_prepare", recording_prepare)
    padded = generate(tiny_pipeline, **options)
    assert shapes == [(90, 32)], "2.5 s (75 frames) rounds up to 3 s; a short prompt's tokens to 32"
    for a, b in zip(exact, padded, strict=True):
        assert b.frames == frames_for_duration(options["durations"][b.prompt_index])
        assert_clips_close(a, b)


def test_many_new_prompts_are_encoded_in_bounded_passes_with_the_same_features(tiny_pipeline, monkeypatch):
    from hymotion.model import text_encoder as text_encoder_module

    encoder = tiny_pipeline.text_encoder()
    prompts = [f"a person walks {count} steps" for count in range(6)]
    alone = [encoder.encode([prompt])[0] for prompt in prompts]
    longest = text_encoder_module.padded_tokens(max(len(ids) for ids in encoder.qwen_tokenizer(
        [text_encoder_module.chat_text(encoder.qwen_tokenizer, prompt) for prompt in prompts])["input_ids"]))
    monkeypatch.setattr(text_encoder_module, "MAX_TOKENS_PER_PASS", 2 * longest)
    passes = []
    hook = encoder.qwen_model.register_forward_pre_hook(
        lambda module, args, kwargs: passes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        together = encoder.encode(prompts)
    finally:
        hook.remove()
    assert [rows for rows, _ in passes] == [2, 2, 2] and all(rows * length <= 2 * longest for rows, length in passes)
    # Right padding and causal attention keep each prompt's real tokens independent of its pass; the tiny Qwen runs in
    # bf16, where another batch size may round a value differently: a few bf16 ulps (2^-8 relative each) after its
    # two layers, so 2^-5 relative keeps >= 3x margin.
    for one, batched in zip(alone, together, strict=True):
        torch.testing.assert_close(batched.ctxt.float(), one.ctxt.float(), rtol=2**-5, atol=2**-5)
        torch.testing.assert_close(batched.vtxt, one.vtxt, rtol=1e-5, atol=1e-5)  # fp32 CLIP: order only, ~1e-7


def test_qwen_passes_are_padded_to_a_few_lengths_without_changing_the_features(tiny_pipeline, monkeypatch):
    from hymotion.model import text_encoder as text_encoder_module

    encoder = tiny_pipeline.text_encoder()
    multiple = text_encoder_module.QWEN_TOKEN_MULTIPLE
    prompts = ["a person waves", "a person walks forward, turns around and sits down on the floor"]
    lengths = []
    hook = encoder.qwen_model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        padded = [encoder.encode([prompt])[0] for prompt in prompts]
        monkeypatch.setattr(text_encoder_module, "QWEN_TOKEN_MULTIPLE", 1)
        exact = [encoder.encode([prompt])[0] for prompt in prompts]
    finally:
        hook.remove()
    assert all(length % multiple == 0 for length in lengths[:2]) and lengths[2] != lengths[3]
    assert all(length % multiple for length in lengths[2:]), "an exact length fell on the grid: choose other prompts"
    # Same bound as above: another padded length may round a bf16 value differently, a few ulps after two layers.
    for one, other in zip(padded, exact, strict=True):
        assert one.ctxt.shape == other.ctxt.shape
        torch.testing.assert_close(one.ctxt.float(), other.ctxt.float(), rtol=2**-5, atol=2**-5)


def test_preparing_the_text_encoder_loads_it_and_caches_nothing(tmp_path):
    pipe = load_pipeline("tiny-random", plan="stream", device="cpu", cache_dir=tmp_path / "cache")
    pipe.prepare_text_encoder()
    assert pipe._text_encoder is not None
    assert pipeline_module.WARM_UP_PROMPT not in pipe._recent_embeddings
    assert not list((tmp_path / "cache").rglob("*.safetensors")), "the throw-away prompt is cached nowhere"
