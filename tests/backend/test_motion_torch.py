"""The device decoder (torch) computes what the numpy reference computes, for a batch of clips at once."""

import numpy as np
import pytest
import torch

from hymotion.pipeline import motion, motion_torch

# Both sides compute in float64 with the same formulas; the device side returns float32. Values stay within a few
# metres (noise latents through the tiny normalisation), so float32 rounding of the output is at most ~2.4e-7 per value
# (half an ulp at 4.0). Differences of float64 summation order are ~1e-15 relative, and even amplified a million-fold by
# nearly parallel rot6d columns stay below 1e-9. 1e-6 is 4x the float32 rounding.
FLOAT32_OUTPUT = 1e-6


@pytest.mark.parametrize("frames", [8, 11, 150])
@pytest.mark.parametrize("smoothing", [True, False])
def test_device_decoding_equals_the_numpy_reference(frames, smoothing):
    rng = np.random.default_rng(frames)
    latents = rng.normal(size=(3, frames, motion.LATENT_DIM)).astype(np.float32)
    mean = rng.normal(size=motion.LATENT_DIM) * 0.1
    std = rng.random(motion.LATENT_DIM) * 0.5 + 0.05
    std[[4, 40]] = 1e-4  # channels below the std floor are constants
    expected = motion.decode_latent(latents, mean, std, smoothing)
    actual = motion_torch.decode_latents(torch.from_numpy(latents), torch.from_numpy(mean), torch.from_numpy(std),
                                         smoothing)
    for name, got, want in zip(("translation", "rotations", "positions"), actual, expected, strict=True):
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=FLOAT32_OUTPUT, err_msg=name)


def test_both_smoothings_are_scipys_savgol_filter_edges_included():
    from scipy.signal import savgol_filter

    translation = np.random.default_rng(1).normal(size=(2, 40, 3))
    reference = savgol_filter(translation, motion.TRANSLATION_WINDOW, motion.TRANSLATION_ORDER, axis=-2, mode="interp")
    # Both fit the same polynomials, scipy by lstsq, the operator by a pseudo-inverse of the window's Vandermonde
    # matrix (positions -5..5, powers up to 5: condition number ~1e4), so each coefficient agrees to ~1e4 x 1e-16 =
    # 1e-12 relative; 11 coefficients times samples of |x| < 5 bound the output's difference near 5e-11. 2e-10 is 4x.
    np.testing.assert_allclose(motion.smooth_translation(translation), reference, atol=2e-10)
    smoothed = motion_torch.smooth_translation(torch.from_numpy(translation)).numpy()
    np.testing.assert_allclose(smoothed, reference, atol=2e-10)
