"""Blender's F-curve evaluation in numpy (constant, linear and Bezier keys, each handle clamped to its own segment),
so the sparse-key fit measures its error on the curve Blender will play; checked against ``FCurve.evaluate`` in
tests/blender/test_sparse_action.py."""

from __future__ import annotations

import numpy as np

INTERPOLATIONS = ("CONSTANT", "LINEAR", "BEZIER")


# Blender's F-curve evaluation returns a key's own value within this distance of its frame (fcurve.cc's binary search).
_EXACT_FRAME = 1e-4


# The Bezier parameter where the segment's frame is the one asked for: Newton's method from the linear guess (exact
# where the handles sit at the thirds, as this fit puts them), then bisection for what did not settle within 1e-9
# frames (60 halvings of [0, 1] leave 1e-18); the value then errs by at most the curve's slope times 1e-9 frames.
_NEWTON_STEPS = 4


_SETTLED_FRAME = 1e-9


_BISECTION_STEPS = 60


def evaluate_fcurve(co: np.ndarray, handle_left: np.ndarray, handle_right: np.ndarray, interpolation,
                    frames: np.ndarray) -> np.ndarray:
    """An F-curve's values at `frames`, evaluated as Blender does (fcurve.cc): constant extrapolation, a key's own value
    at its frame, and per segment the interpolation of its first key: CONSTANT, LINEAR, or BEZIER, the cubic Bezier
    in (frame, value) from the key through its right handle and the next key's left handle to the next key, each handle
    first shortened (along itself) where it alone reaches further in time than the segment (BKE_fcurve_correct_bezpart),
    and the curve's parameter found where its frame equals the frame asked for (handles that cross each other so far
    that the frame runs backwards inside a segment are not reproduced: Blender then takes the first root of a cubic;
    no handle this module writes comes near).
    `interpolation` is one name or one per key (INTERPOLATIONS). Float64 here; Blender works in float32 (values
    agree to its roundoff, 6e-8 relative)."""
    co = np.asarray(co, dtype=np.float64)
    left = np.asarray(handle_left, dtype=np.float64)
    right = np.asarray(handle_right, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.float64)
    modes = np.broadcast_to(np.asarray(interpolation), co.shape[:1])
    x, y = co[:, 0], co[:, 1]
    result = np.where(frames <= x[0], y[0], y[-1])
    if co.shape[0] < 2:
        return result
    inside = (frames > x[0]) & (frames < x[-1])
    at = frames[inside]
    segment = np.clip(np.searchsorted(x, at, side="right") - 1, 0, x.size - 2)
    x0, x1, y0, y1 = x[segment], x[segment + 1], y[segment], y[segment + 1]
    values = y0.copy()
    mode = modes[segment]
    linear = mode == "LINEAR"
    values[linear] = (y0 + (at - x0) / (x1 - x0) * (y1 - y0))[linear]
    bezier = mode == "BEZIER"
    if bezier.any():
        s = segment[bezier]
        values[bezier] = _bezier_segment(co[s], right[s], left[s + 1], co[s + 1], at[bezier])
    values = np.where(np.abs(at - x0) < _EXACT_FRAME, y0, values)
    values = np.where(np.abs(at - x1) < _EXACT_FRAME, y1, values)
    result[inside] = values
    return result


def _bezier_segment(v1, v2, v3, v4, at: np.ndarray) -> np.ndarray:
    """Values of Bezier segments (points (N, 2) each) at frames `at` (N,), handles corrected as Blender does."""
    h1, h2 = v1 - v2, v4 - v3
    span = (v4[:, 0] - v1[:, 0])[:, None]
    length1, length2 = np.abs(h1[:, :1]), np.abs(h2[:, :1])
    v2 = v1 - np.where(length1 > span, span / np.maximum(length1, 1e-300), 1.0) * h1
    v3 = v4 - np.where(length2 > span, span / np.maximum(length2, 1e-300), 1.0) * h2

    def cubic(p0, p1, p2, p3, t):
        u = 1.0 - t
        return u * u * u * p0 + 3.0 * u * u * t * p1 + 3.0 * u * t * t * p2 + t * t * t * p3

    x1, x2, x3, x4 = v1[:, 0], v2[:, 0], v3[:, 0], v4[:, 0]
    t = np.clip((at - x1) / np.maximum(x4 - x1, 1e-300), 0.0, 1.0)  # exact where the handles sit at the thirds
    for _ in range(_NEWTON_STEPS):
        u = 1.0 - t
        slope = 3.0 * (u * u * (x2 - x1) + 2.0 * u * t * (x3 - x2) + t * t * (x4 - x3))
        t = np.clip(t - (cubic(x1, x2, x3, x4, t) - at) / np.maximum(slope, 1e-12), 0.0, 1.0)
    unsettled = np.abs(cubic(x1, x2, x3, x4, t) - at) > _SETTLED_FRAME
    if unsettled.any():  # Newton stalls where x(t) is flat (a handle as long as the segment): bisect those
        low, high = np.zeros(unsettled.sum()), np.ones(unsettled.sum())
        for _ in range(_BISECTION_STEPS):  # x(t) rises monotonically unless the handles cross (the docstring)
            middle = 0.5 * (low + high)
            below = cubic(x1[unsettled], x2[unsettled], x3[unsettled], x4[unsettled], middle) < at[unsettled]
            low, high = np.where(below, middle, low), np.where(below, high, middle)
        t[unsettled] = 0.5 * (low + high)
    return cubic(v1[:, 1], v2[:, 1], v3[:, 1], v4[:, 1], t)
