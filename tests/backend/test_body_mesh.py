"""The SMPL-X body loader on a synthetic model file with SMPL-X's layout, and `hymotion body-mesh`."""

import numpy as np
import pytest

from hymotion.cli import main
from hymotion.shared import skeleton
from hymotion.shared.body_mesh import BodyMesh, load_smplx_body
from hymotion.shared.errors import BAD_REQUEST, HyMotionError

VERTICES_PER_JOINT = 6
ROOT_PARENT = 4294967295  # how SMPL-X files store the root's parent in kintree_table (uint32 -1)


def synthetic_smplx(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Vertices scattered around each joint of a body a few cm off HY-Motion's skeleton, weighted to that joint and
    its parent; each joint regressed from its own vertices."""
    joints = skeleton.SMPLX_REST_POSITIONS + np.array([0.01, -0.15, 0.005])
    owner = np.repeat(np.arange(skeleton.NUM_SMPLX_JOINTS), VERTICES_PER_JOINT)
    template = joints[owner] + rng.normal(scale=0.02, size=(len(owner), 3))
    weights = np.zeros((len(owner), skeleton.NUM_SMPLX_JOINTS))
    share = rng.uniform(0.5, 1.0, size=len(owner))
    parent = np.maximum(np.asarray(skeleton.SMPLX_PARENTS)[owner], 0)
    weights[np.arange(len(owner)), owner] += share
    weights[np.arange(len(owner)), parent] += 1.0 - share
    regressor = (owner[None, :] == np.arange(skeleton.NUM_SMPLX_JOINTS)[:, None]) / VERTICES_PER_JOINT
    faces = rng.integers(0, len(owner), size=(200, 3))
    kintree = np.array([[ROOT_PARENT, *skeleton.SMPLX_PARENTS[1:]], np.arange(skeleton.NUM_SMPLX_JOINTS)], np.int64)
    return {"v_template": template, "f": faces.astype(np.uint32), "weights": weights, "J_regressor": regressor,
            "kintree_table": kintree, "shapedirs": rng.normal(size=(len(owner), 3, 20))}


@pytest.fixture
def model_arrays() -> dict[str, np.ndarray]:
    return synthetic_smplx(np.random.default_rng(7))


@pytest.fixture
def model_file(tmp_path, model_arrays):
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(path, **model_arrays)
    return path


def assert_refused(path, match: str) -> None:
    with pytest.raises(HyMotionError, match=match) as raised:
        load_smplx_body(path)
    assert raised.value.code == BAD_REQUEST and "SMPL-X" in raised.value.hint


def test_rest_body_is_the_template_with_regressed_joints_and_normalised_weights(model_file, model_arrays):
    body = load_smplx_body(model_file)
    vertex_count = len(model_arrays["v_template"])
    assert body.vertices.shape == (vertex_count, 3) and body.vertices.dtype == np.float32
    assert body.faces.shape == (200, 3) and body.faces.dtype == np.int32
    assert body.weights.shape == (vertex_count, skeleton.NUM_SMPLX_JOINTS) and body.weights.dtype == np.float32
    # float32 results of float64 inputs under 1 m (one rounding, <= 6e-8; the regressor sums ~10 such): 1e-6 keeps 10x
    np.testing.assert_allclose(body.vertices, model_arrays["v_template"], atol=1e-6)
    np.testing.assert_array_equal(body.faces, model_arrays["f"])
    np.testing.assert_allclose(body.joints, model_arrays["J_regressor"] @ model_arrays["v_template"], atol=1e-6)
    np.testing.assert_allclose(body.weights.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(body.weights, model_arrays["weights"], atol=1e-6)


def test_unpickled_extra_entries_are_never_read(tmp_path, model_arrays):
    """Real SMPL-X files carry pickled dictionaries (e.g. joint2num) beside the arrays the rest pose needs."""
    path = tmp_path / "with_objects.npz"
    np.savez(path, **model_arrays, joint2num=np.array({"pelvis": 0}, dtype=object))
    assert load_smplx_body(path).vertices.shape == model_arrays["v_template"].shape


def test_a_pickled_object_array_in_a_needed_entry_is_refused(tmp_path, model_arrays):
    path = tmp_path / "pickled.npz"
    weights = np.empty(len(model_arrays["weights"]), dtype=object)
    weights[:] = list(model_arrays["weights"])
    np.savez(path, **{**model_arrays, "weights": weights})
    assert_refused(path, "not unpickled")


def test_missing_unreadable_and_wrong_files_are_refused(tmp_path, model_arrays):
    assert_refused(tmp_path / "nowhere.npz", "does not exist")
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    assert_refused(tmp_path / "model.pkl", "pickle file")
    (tmp_path / "text.npz").write_text("not an archive")
    assert_refused(tmp_path / "text.npz", "not a readable .npz")
    np.savez(tmp_path / "smplh.npz", **{**model_arrays, "weights": model_arrays["weights"][:, :52]})
    assert_refused(tmp_path / "smplh.npz", "not an SMPL-X model")
    np.savez(tmp_path / "incomplete.npz", **{k: v for k, v in model_arrays.items() if k != "J_regressor"})
    assert_refused(tmp_path / "incomplete.npz", "has no J_regressor")
    np.savez(tmp_path / "text_faces.npz", **{**model_arrays, "f": np.array(["a", "b"])})
    assert_refused(tmp_path / "text_faces.npz", "holds no numbers in f")


def test_body_mesh_command_writes_a_plain_npz_that_loads_back(tmp_path, model_file, capsys):
    out = tmp_path / "body.npz"
    assert main(["body-mesh", "--smplx-model", str(model_file), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    with np.load(out, allow_pickle=False) as written:
        assert set(written.files) == {"vertices", "faces", "weights", "joints", "joint_names"}
        assert tuple(written["joint_names"]) == skeleton.SMPLX_JOINT_NAMES
    expected, loaded = load_smplx_body(model_file), BodyMesh.load(out)
    for field in ("vertices", "faces", "weights", "joints"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(expected, field))


def test_body_mesh_command_reports_a_missing_model_with_exit_code_2(tmp_path, capsys):
    code = main(["body-mesh", "--smplx-model", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "b.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "hint:" in err and "SMPLX_NEUTRAL.npz" in err
    assert not (tmp_path / "b.npz").exists()
