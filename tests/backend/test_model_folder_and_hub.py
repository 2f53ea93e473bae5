"""The model folder one level too deep and a hub that cannot be reached (issue 26, points 13 and 14): --model-dir
pointed at HY-Motion-1.0-Lite itself means its parent, and a download without a reachable hub names the host,
HTTPS_PROXY / HF_ENDPOINT and the offline path, with exit code 2 and no traceback."""

import socket

from test_cli import run

from hymotion import hub_errors, weights
from hymotion.shared.errors import WEIGHTS_MISSING


def official_layout(root):
    """The files weights.locate checks, as the official download lays them out (contents do not matter here)."""
    lite = root / "HY-Motion-1.0-Lite"
    lite.mkdir(parents=True)
    (lite / "config.yml").write_text("network_module_args: {feat_dim: 1024}\n")
    (lite / "latest.ckpt").write_bytes(b"")
    for name in ("Qwen3-8B", "clip-vit-large-patch14"):
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
        (root / name / "model.safetensors").write_bytes(b"")
    return lite


def test_a_model_folder_pointed_at_the_lite_folder_itself_means_its_parent(tmp_path):
    lite = official_layout(tmp_path / "weights")
    assert weights.model_root(lite) == tmp_path / "weights"
    assert weights.model_root(tmp_path / "weights") == tmp_path / "weights"
    assert weights.model_root(None) is None
    files = weights.locate("lite", lite)
    assert files.model_folder == lite and files.qwen_folder == tmp_path / "weights" / "Qwen3-8B"


def test_the_cli_model_dir_at_the_lite_folder_does_not_advise_a_download_into_it(tmp_path, capsys):
    lite = tmp_path / "weights" / "HY-Motion-1.0-Lite"
    lite.mkdir(parents=True)  # empty: the weights are not there, but the advice must name the parent folder
    code, err = run(["generate", "--model", "lite", "--model-dir", lite, "a person walks", "--duration", "1",
                     "--out", tmp_path / "x.npz"], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"--model-dir {tmp_path / 'weights'}" in err and f"--model-dir {lite}" not in err


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_download_without_a_reachable_hub_names_the_host_the_proxy_and_the_offline_path(tmp_path, capsys,
                                                                                           monkeypatch):
    from huggingface_hub import constants

    port = closed_port()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, err = run(["download", "--variant", "lite", "--model-dir", tmp_path / "weights"], capsys)
    assert code == 2 and "Traceback" not in err and ".." not in err
    assert f"Could not reach 127.0.0.1:{port} to download tencent/HY-Motion-1.0" in err
    assert "HTTPS_PROXY" in err and "HF_ENDPOINT" in err and "Model Folder" in err and "--model-dir" in err


def test_only_connection_failures_count_as_unreachable():
    class ConnectError(Exception):
        pass

    try:
        try:
            raise ConnectError("[Errno 111] Connection refused")
        except ConnectError as inner:
            raise OSError("An error happened while trying to locate the files on the Hub.") from inner
    except OSError as outer:
        assert hub_errors.is_unreachable(outer)
        error = hub_errors.unreachable_error(outer, "Qwen/Qwen3-8B", "Qwen3-8B")
        assert error.code == WEIGHTS_MISSING and "ConnectError: [Errno 111] Connection refused" in error.message
    assert not hub_errors.is_unreachable(ValueError("401 Unauthorized"))
