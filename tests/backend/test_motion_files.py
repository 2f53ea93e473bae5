"""The one motion-file reader and writer (hymotion.shared.motion_files): a whole file round-trips, and every damaged
or foreign file (Hypothesis writes them) is refused with one clear bad_request, never a traceback or a silent
acceptance."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hymotion.shared import motion_files, skeleton
from hymotion.shared.errors import HyMotionError
from hymotion.shared.motion_files import motion_arrays, read_motion_file, write_motion_file

FRAMES = 12
EXAMPLES = 60
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def good_arrays(frames: int = FRAMES) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    rotations = rng.normal(size=(frames, skeleton.NUM_BODY_JOINTS, 4))
    rotations /= np.linalg.norm(rotations, axis=-1, keepdims=True)
    return motion_arrays(rng.normal(size=(frames, 3)), rotations, prompt="a person jumps", seed=7, duration=0.4,
                         model_id="HY-Motion-1.0-lite")


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def refused(path: Path, *words: str) -> HyMotionError:
    with pytest.raises(HyMotionError) as caught:
        read_motion_file(path)
    error = caught.value
    assert error.code == "bad_request" and error.hint, error
    assert str(path) in error.message, error.message
    for word in words:
        assert word in error.message, error.message
    return error


# --- whole files ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", motion_files.FORMATS)
def test_a_written_file_reads_back_with_every_field(tmp_path, fmt):
    arrays = good_arrays()
    path = write_motion_file(tmp_path / f"clip.{fmt}", arrays, fmt)
    clip = read_motion_file(path)
    np.testing.assert_array_equal(clip.translation, arrays["translation"])
    np.testing.assert_array_equal(clip.rotations, arrays["rotations"])
    np.testing.assert_array_equal(clip.positions, arrays["positions"])
    assert (clip.fps, clip.prompt, clip.seed, clip.duration, clip.model_id) == (
        30.0, "a person jumps", 7, 0.4, "HY-Motion-1.0-lite")
    assert [p.name for p in tmp_path.iterdir()] == [f"clip.{fmt}"]


def test_a_file_with_only_the_required_arrays_is_read(tmp_path):
    arrays = good_arrays()
    path = save_npz(tmp_path / "pose.npz", {key: arrays[key] for key in motion_files.REQUIRED_ARRAYS})
    clip = read_motion_file(path)
    assert clip.positions is None and clip.fps == skeleton.FPS and clip.frames == FRAMES


def test_the_writer_refuses_nan_and_writes_nothing(tmp_path):
    arrays = good_arrays()
    arrays["rotations"][3, 4, 0] = np.nan
    with pytest.raises(HyMotionError, match="1 in rotations") as caught:
        write_motion_file(tmp_path / "clip.npz", arrays)
    assert caught.value.hint and not list(tmp_path.iterdir())


# --- damaged .npz files ---------------------------------------------------------------------------------------------


@FUZZ
@given(cut=st.floats(0.0, 0.999))
def test_a_truncated_npz_is_refused(tmp_path, cut):
    whole = write_motion_file(tmp_path / "whole.npz", good_arrays()).read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(whole[: int(cut * len(whole))])
    refused(path)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_refused(tmp_path, data):
    path = tmp_path / "noise.npz"
    path.write_bytes(data)
    refused(path)


@FUZZ
@given(position=st.integers(0, 10**9), byte=st.integers(0, 255))
def test_a_corrupted_npz_is_refused_or_read_whole(tmp_path, position, byte):
    """One byte changed anywhere: a zip's CRC catches damaged data, so the file is either refused or (a byte in a
    part that is not checked, like a file time) read with the very same motion."""
    data = bytearray(write_motion_file(tmp_path / "whole.npz", good_arrays()).read_bytes())
    data[position % len(data)] = byte
    path = tmp_path / "changed.npz"
    path.write_bytes(bytes(data))
    try:
        clip = read_motion_file(path)
    except HyMotionError as error:
        assert error.code == "bad_request" and error.hint
    else:
        np.testing.assert_array_equal(clip.rotations, good_arrays()["rotations"].astype(np.float32))


ARRAY_NAMES = ("translation", "rotations", "positions", "rest_offsets", "fps", "duration")


@FUZZ
@given(name=st.sampled_from(ARRAY_NAMES), value=st.sampled_from([np.nan, np.inf, -np.inf]), where=st.integers(0, 10**6))
def test_a_nan_or_infinite_number_is_refused_naming_its_array(tmp_path, name, value, where):
    arrays = good_arrays()
    broken = arrays[name].astype(np.float64).copy()
    broken.reshape(-1)[where % broken.size] = value
    arrays[name] = broken
    refused(save_npz(tmp_path / "nan.npz", arrays), repr(name), "NaN or infinite")


@FUZZ
@given(name=st.sampled_from(("translation", "rotations", "positions")),
       shape=st.lists(st.integers(0, 30), min_size=0, max_size=4).map(tuple))
def test_an_array_of_the_wrong_shape_is_refused(tmp_path, name, shape):
    arrays = good_arrays()
    if shape == arrays[name].shape:
        return
    arrays[name] = np.zeros(shape, np.float32)
    refused(save_npz(tmp_path / "shape.npz", arrays))


@FUZZ
@given(name=st.sampled_from(motion_files.NUMBER_ARRAYS), text=st.text(max_size=20))
def test_text_where_numbers_belong_is_refused(tmp_path, name, text):
    arrays = good_arrays()
    arrays[name] = np.full(arrays[name].shape, text)
    refused(save_npz(tmp_path / "text.npz", arrays), repr(name))


@pytest.mark.parametrize("name", motion_files.REQUIRED_ARRAYS)
def test_a_file_without_a_required_array_is_refused(tmp_path, name):
    arrays = good_arrays()
    del arrays[name]
    refused(save_npz(tmp_path / "missing.npz", arrays), name)


@pytest.mark.parametrize("change, words", [
    ({"joint_names": np.asarray(["root"] + ["j"] * 21)}, "not this model's skeleton"),
    ({"parents": np.arange(22) - 1}, "joint parents"),
    ({"rest_offsets": skeleton.BODY_REST_OFFSETS * 1.1}, "another rest pose"),
    ({"rest_offsets": np.zeros((3, 3))}, "another rest pose"),
    ({"fps": np.asarray(0)}, "frame rate"),
    ({"fps": np.asarray(1e300)}, "frame rate"),
    ({"seed": np.asarray(1.5)}, "not an integer"),
    ({"prompt": np.asarray(["a", "b"])}, "one value"),
])
def test_another_skeleton_or_bad_values_are_refused(tmp_path, change, words):
    refused(save_npz(tmp_path / "other.npz", {**good_arrays(), **change}), words)


def test_an_object_array_is_refused_and_never_unpickled(tmp_path):
    arrays = good_arrays()
    arrays["prompt"] = np.asarray({"payload": "pickle"}, dtype=object)
    refused(save_npz(tmp_path / "pickle.npz", arrays), "objects")


def test_a_npy_file_is_refused(tmp_path):
    path = tmp_path / "clip.npz"
    with open(path, "wb") as handle:
        np.save(handle, np.zeros((FRAMES, 3)))
    refused(path, ".npy")


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    """100 MB of zeros compress to about 100 KB; the zip directory tells their size before a byte is unpacked."""
    path = tmp_path / "bomb.npz"
    arrays = good_arrays()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, value)
            archive.writestr(f"{name}.npy", buffer.getvalue())
        with archive.open("zeros.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                         "shape": (100 * 2**20 // 8,)})
            for _ in range(100):
                member.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    refused(path, "unpacks to")


def test_an_array_header_that_claims_more_than_its_member_holds_is_refused(tmp_path):
    path = tmp_path / "liar.npz"
    arrays = good_arrays()
    save_npz(path, arrays)
    with zipfile.ZipFile(path, "a") as archive:
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
        archive.writestr("huge.npy", buffer.getvalue() + bytes(64))
    refused(path, "claims")


def test_the_limits_are_what_the_longest_motion_needs(tmp_path):
    """A file of MAX_FRAMES frames (float64, the widest) fits every bound; one frame more is refused."""
    longest = motion_files.MAX_FRAMES
    arrays = good_arrays(1)
    per_frame = {key: np.repeat(arrays[key].astype(np.float64), longest, axis=0)
                 for key in ("translation", "rotations", "positions")}
    total = sum(value.nbytes for value in per_frame.values())
    assert per_frame["rotations"].nbytes < motion_files.MAX_ARRAY_BYTES and total < motion_files.MAX_NPZ_BYTES
    path = save_npz(tmp_path / "long.npz", {**arrays, **per_frame})
    assert read_motion_file(path).frames == longest
    longer = {key: np.concatenate([value, value[:1]]) for key, value in per_frame.items()}
    refused(save_npz(tmp_path / "longer.npz", {**arrays, **longer}), f"{longest:,}")


# --- damaged JSON files ---------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(document=JSON_VALUES.filter(lambda value: not isinstance(value, dict)))
def test_json_whose_top_level_is_not_an_object_is_refused(tmp_path, document):
    path = tmp_path / "clip.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    refused(path, "not an object")


@FUZZ
@given(name=st.sampled_from(("translation", "rotations", "positions", "joint_names", "fps", "seed")),
       value=JSON_VALUES)
def test_json_with_any_value_in_place_of_an_array_is_refused_or_read_as_valid(tmp_path, name, value):
    """Any JSON value in place of a field: refused with a bad_request, or (a number where one number belongs)
    read as that number."""
    document = {key: array.tolist() for key, array in good_arrays().items()}
    document[name] = value
    path = tmp_path / "clip.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        clip = read_motion_file(path)
    except HyMotionError as error:
        assert error.code == "bad_request" and error.hint and str(path) in error.message
    else:
        assert (name, clip.fps if name == "fps" else clip.seed) == (name, value)
        assert name == "seed" and isinstance(value, int) or name == "fps" and value > 0


@FUZZ
@given(depth=st.integers(33, 200_000))  # past numpy's 32 dimensions, then past the parser's recursion
def test_deeply_nested_json_is_refused(tmp_path, depth):
    path = tmp_path / "deep.json"
    path.write_text('{"translation": ' + "[" * depth + "]" * depth + "}", encoding="utf-8")
    refused(path)


@FUZZ
@given(cut=st.floats(0.0, 0.999))
def test_truncated_json_is_refused(tmp_path, cut):
    whole = write_motion_file(tmp_path / "whole.json", good_arrays(), "json").read_text(encoding="utf-8")
    path = tmp_path / "cut.json"
    path.write_text(whole[: int(cut * len(whole))], encoding="utf-8")
    refused(path)


def test_json_with_nan_is_refused_naming_its_array(tmp_path):
    document = {key: array.tolist() for key, array in good_arrays().items()}
    document["translation"][2][1] = float("nan")
    path = tmp_path / "clip.json"
    path.write_text(json.dumps(document), encoding="utf-8")  # Python writes NaN, which JSON has no word for
    refused(path, "'translation'", "NaN or infinite")


def test_json_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "clip.json"
    path.write_bytes(b'{"prompt": "\xff\xfe"}')
    refused(path)


@pytest.mark.parametrize("offset, value", [(8, 1), (10, 99)], ids=["encrypted", "unknown-compression"])
def test_an_encrypted_or_oddly_compressed_archive_is_refused(tmp_path, offset, value):
    path = save_npz(tmp_path / "clip.npz", good_arrays())
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the zip directory's first entry: its flags at +8, its compression at +10
    data[entry + offset] = value
    path.write_bytes(bytes(data))
    refused(path)


def test_a_missing_file_is_refused(tmp_path):
    refused(tmp_path / "none.npz", "does not exist")


def test_the_limits_quoted_in_the_docs_match_the_reader():
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert f"at most {motion_files.MAX_FRAMES:,} frames" in text
    assert (
        f"at most {motion_files.MAX_NPZ_BYTES / 1e6:.0f} MB in all, {motion_files.MAX_ARRAY_BYTES / 1e6:.0f} MB" in text
    )
    assert f"at most {motion_files.MAX_JSON_BYTES / 1e6:.0f} MB" in text
