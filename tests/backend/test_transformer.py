"""The DiT computes only the requested frames and the real text tokens, and that equals the official padded run.

Every weight is random (modulation layers included), so a mask or position that leaked would show in the output.
"""

import pytest
import torch

from hymotion.model.tiny import TINY_DIT_CONFIG, build_tiny_model, build_tiny_text_encoder, randomize_parameters
from hymotion.model.transformer import AttentionLayout, HunyuanMotionMMDiT, rope_table

TRAIN_FRAMES = 360
MAX_TEXT_TOKENS = 128
BAND = 60
# The trimmed/batched DiT against the padded/one-at-a-time run: the same fp32 math, but masked keys add exact zeros
# and attention sums run over other lengths, so results differ by summation order only: a few ulps of O(1)
# activations (~1e-7) per layer, ~1e-6 after the tiny DiT's layers. 1e-5 keeps ~10x margin; a leaked mask or a
# shifted RoPE position changes outputs by O(0.1).
EXACT = dict(atol=1e-5, rtol=1e-5)
# One block with an input that cannot reach the output (masked): the output is recomputed from identical numbers, so
# only a kernel's summation order could move it (a few fp32 ulps, < 1e-6 on O(1) values).
UNREACHED = 1e-6


def random_dit(num_layers: int = 6, seed: int = 0) -> HunyuanMotionMMDiT:
    """Tiny DiT (2 double + 4 single blocks by default) with every parameter random."""
    model = HunyuanMotionMMDiT(**{**TINY_DIT_CONFIG, "num_layers": num_layers})
    randomize_parameters(model, torch.Generator().manual_seed(seed))
    return model.eval()


def padded_inputs(batch: int, seed: int = 1):
    """Full-length inputs; the padding holds random values so that any leak from it shows."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, TRAIN_FRAMES, 201, generator=generator)
    ctxt = torch.randn(batch, MAX_TEXT_TOKENS, TINY_DIT_CONFIG["ctxt_input_dim"], generator=generator)
    vtxt = torch.randn(batch, 1, TINY_DIT_CONFIG["vtxt_input_dim"], generator=generator)
    t = torch.rand(batch, generator=generator)
    return x, ctxt, vtxt, t


def valid_mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.arange(width)[None] < torch.tensor(lengths)[:, None]


def forward(model, x, ctxt, vtxt, t, frames: list[int], tokens: list[int]) -> torch.Tensor:
    layout = model.build_layout(valid_mask(frames, x.shape[1]), valid_mask(tokens, ctxt.shape[1]))
    with torch.no_grad():
        return model(x, ctxt, vtxt, t, layout)


def test_tiny_models_have_no_all_zero_parameter():
    model = build_tiny_model()
    encoder = build_tiny_text_encoder()
    for module in (model.transformer, encoder.qwen_model, encoder.clip_model):
        zero = [name for name, parameter in module.named_parameters() if not parameter.detach().float().abs().sum()]
        assert not zero, f"all-zero parameters in a tiny model: {zero}"
    modulation = [name for name, _ in model.transformer.named_parameters() if "mod" in name and "linear" in name]
    assert len(modulation) >= 2 * 3, "expected the modulation layers of every block"


def test_randomize_parameters_overwrites_zero_initialised_modulation():
    model = HunyuanMotionMMDiT(**TINY_DIT_CONFIG)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "mod" in name:
                parameter.zero_()
    randomize_parameters(model, torch.Generator().manual_seed(3))
    for name, parameter in model.named_parameters():
        assert parameter.abs().sum() > 0, name


def test_trimmed_frames_and_tokens_equal_full_length_padded_run():
    model = random_dit()
    x, ctxt, vtxt, t = padded_inputs(1)
    frames, tokens = 75, 9
    full = forward(model, x, ctxt, vtxt, t, [frames], [tokens])
    trimmed = forward(model, x[:, :frames], ctxt[:, :tokens], vtxt, t, [frames], [tokens])
    assert full.shape == (1, TRAIN_FRAMES, 201) and trimmed.shape == (1, frames, 201)
    torch.testing.assert_close(trimmed, full[:, :frames], **EXACT)


def test_batch_of_two_prompts_of_different_lengths_equals_each_padded_run():
    model = random_dit()
    x, ctxt, vtxt, t = padded_inputs(2)
    frames, tokens = [75, 130], [9, 4]
    batched = forward(model, x[:, : max(frames)], ctxt[:, : max(tokens)], vtxt, t, frames, tokens)
    for row in range(2):
        alone = forward(
            model, x[row : row + 1], ctxt[row : row + 1], vtxt[row : row + 1], t[row : row + 1],
            [frames[row]], [tokens[row]],
        )
        torch.testing.assert_close(batched[row, : frames[row]], alone[0, : frames[row]], **EXACT)


def test_padding_content_does_not_reach_real_frames():
    model = random_dit()
    x, ctxt, vtxt, t = padded_inputs(1)
    frames, tokens = 90, 12
    reference = forward(model, x, ctxt, vtxt, t, [frames], [tokens])
    x_changed, ctxt_changed = x.clone(), ctxt.clone()
    x_changed[:, frames:] += 5.0
    ctxt_changed[:, tokens:] -= 5.0
    changed = forward(model, x_changed, ctxt_changed, vtxt, t, [frames], [tokens])
    torch.testing.assert_close(changed[:, :frames], reference[:, :frames], **EXACT)


def test_text_tokens_take_rope_positions_from_train_frames():
    model = random_dit()
    frames, tokens = 40, 6
    layout = model.build_layout(torch.ones(1, frames, dtype=torch.bool), torch.ones(1, tokens, dtype=torch.bool))
    text_positions = torch.arange(TRAIN_FRAMES, TRAIN_FRAMES + tokens)
    torch.testing.assert_close(layout.rope[frames:], rope_table(text_positions, model.head_dim))
    torch.testing.assert_close(layout.rope[:frames], rope_table(torch.arange(frames), model.head_dim))

    x, ctxt, vtxt, t = padded_inputs(1)
    x, ctxt = x[:, :frames], ctxt[:, :tokens]
    with torch.no_grad():
        official = model(x, ctxt, vtxt, t, layout)
        for offset in (frames, 0):
            shifted = AttentionLayout.build(
                layout.text_valid.new_ones(1, frames), layout.text_valid, model.head_dim, model.band, model.dtype,
                text_position_offset=offset,
            )
            moved = model(x, ctxt, vtxt, t, shifted)
            assert (moved - official).abs().max() > 1e-3, f"text at position {offset} gave the same output"


def double_block_io(model, frames: int, tokens: int):
    generator = torch.Generator().manual_seed(5)
    dim = model.config.feat_dim
    motion = torch.randn(1, frames, dim, generator=generator)
    text = torch.randn(1, tokens, dim, generator=generator)
    adapter = torch.randn(1, 1, dim, generator=generator)
    layout = model.build_layout(torch.ones(1, frames, dtype=torch.bool), torch.ones(1, tokens, dtype=torch.bool))
    return motion, text, adapter, layout


def test_text_stream_never_sees_motion():
    model = random_dit()
    block = model.double_blocks[0]
    motion, text, adapter, layout = double_block_io(model, frames=50, tokens=7)
    with torch.no_grad():
        motion_out, text_out = block(motion, text, adapter, layout)
        motion_out_2, text_out_2 = block(motion + torch.randn_like(motion), text, adapter, layout)
    torch.testing.assert_close(text_out_2, text_out, atol=UNREACHED, rtol=0)
    assert (motion_out_2 - motion_out).abs().max() > 1e-2


def test_motion_attends_within_plus_minus_sixty_frames():
    model = random_dit()
    assert model.band == BAND
    block = model.double_blocks[0]
    motion, text, adapter, layout = double_block_io(model, frames=150, tokens=5)
    perturbed = motion.clone()
    perturbed[:, 0] += torch.randn(perturbed.shape[-1], generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        reference, text_ref = block(motion, text, adapter, layout)
        changed, text_changed = block(perturbed, text, adapter, layout)
    difference = (changed - reference).abs().amax(dim=(0, 2))
    assert (difference[: BAND + 1] > UNREACHED).all(), "frames 0..60 must see frame 0"
    assert difference[BAND + 1 :].max() <= UNREACHED, "frames beyond 60 must not see frame 0"
    torch.testing.assert_close(text_changed, text_ref, atol=UNREACHED, rtol=0)


def test_band_widens_by_sixty_frames_per_block_through_the_whole_model():
    """1 double + 2 single blocks: frame 0 reaches frame 180 and no further (float64, so tiny effects still show)."""
    model = random_dit(num_layers=3).double()
    x, ctxt, vtxt, t = (tensor.double() for tensor in padded_inputs(1))
    frames, tokens = 220, 8
    x, ctxt = x[:, :frames], ctxt[:, :tokens]
    perturbed = x.clone()
    perturbed[:, 0] += torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    reference = forward(model, x, ctxt, vtxt, t, [frames], [tokens])
    changed = forward(model, perturbed, ctxt, vtxt, t, [frames], [tokens])
    difference = (changed - reference).abs().amax(dim=(0, 2))
    reach = 3 * BAND
    assert (difference[: reach + 1] > 0).all()
    assert (difference[reach + 1 :] == 0).all()


@pytest.mark.parametrize("tokens", [1, MAX_TEXT_TOKENS])
def test_single_token_and_full_length_text_stay_exact(tokens):
    model = random_dit(num_layers=3)
    x, ctxt, vtxt, t = padded_inputs(1, seed=7)
    frames = 30
    full = forward(model, x, ctxt, vtxt, t, [frames], [tokens])
    trimmed = forward(model, x[:, :frames], ctxt[:, :tokens], vtxt, t, [frames], [tokens])
    assert torch.isfinite(trimmed).all()
    torch.testing.assert_close(trimmed, full[:, :frames], **EXACT)
