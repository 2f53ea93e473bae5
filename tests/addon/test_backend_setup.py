"""The backend set-up's planning without Blender: which PyTorch build a machine gets, which pip arguments reach the
network, quoting errors, and pip's output turned into progress. The install itself runs in Blender
(tests/blender/test_backend_install.py)."""

from __future__ import annotations

import pytest

from hymotion.shared.errors import HyMotionError
from hymotion_addon.core import package_sources, pip_output

NVIDIA_DRIVER = "NVIDIA driver found (/usr/bin/nvidia-smi)"


def test_remote_sources_count_every_web_address_and_the_default_index():
    remote_sources = package_sources.remote_sources
    assert remote_sources(["--no-index", "--find-links", "https://example.invalid/w"]) == ["https://example.invalid/w"]
    assert remote_sources(["--no-index", "--find-links=https://example.invalid/w"]) == [
        "--find-links=https://example.invalid/w"]
    assert remote_sources(["-ihttp://127.0.0.1:1/simple"]) == ["-ihttp://127.0.0.1:1/simple"]
    assert remote_sources(["--no-index", "git+https://example.invalid/x.git"]) == ["git+https://example.invalid/x.git"]
    assert remote_sources(["--no-index", "--find-links", "/wheels"], "https://example.invalid/cpu") == [
        "https://example.invalid/cpu"]
    assert remote_sources(["--no-index", "--find-links", "/wheels"]) == []
    assert remote_sources(["--index-url", "file:///mirror/simple"], "file:///cpu") == []
    assert remote_sources([])[0].startswith("pip's default package index")


def test_bad_quoting_in_extra_pip_arguments_is_a_user_error_with_a_hint():
    assert package_sources.parse_pip_arguments('--find-links "/path/with spaces"') == [
        "--find-links", "/path/with spaces"]
    assert package_sources.parse_pip_arguments('--find-links "D:\\my wheels" -f D:\\w', windows=True) == [
        "--find-links", "D:\\my wheels", "-f", "D:\\w"]
    for windows in (False, True):
        with pytest.raises(HyMotionError) as raised:
            package_sources.parse_pip_arguments("--find-links '/unclosed", windows=windows)
        assert raised.value.code == "bad_request" and "Close the quote" in raised.value.hint


@pytest.mark.parametrize("system, driver, expected_kind, needs_index", [
    ("Linux", "", "CPU", "PyTorch CPU Index"),
    ("Linux", NVIDIA_DRIVER, "CUDA", ""),
    ("Windows", "", "CPU", ""),
    ("Windows", NVIDIA_DRIVER, "CUDA", "PyTorch CUDA Index"),
    ("Darwin", NVIDIA_DRIVER, "DEFAULT", ""),
])
def test_the_torch_build_follows_the_system_and_the_nvidia_driver(system, driver, expected_kind, needs_index):
    build = package_sources.choose_torch_build(system, driver)
    assert build.kind == expected_kind and build.reason
    assert (needs_index in build.missing) if needs_index else build.missing == ""
    given = package_sources.choose_torch_build(system, driver, cpu_index_url=" file:///cpu ",
                                             cuda_index_url="file:///cuda")
    assert given.missing == "" and given.index_url == {"CPU": "file:///cpu", "CUDA": "file:///cuda"}.get(
        expected_kind, "")


def test_the_user_can_override_the_build_and_the_driver_is_found_by_either_sign():
    assert package_sources.choose_torch_build("Linux", NVIDIA_DRIVER, override="CPU").kind == "CPU"
    assert package_sources.choose_torch_build("Linux", "", override="CUDA").kind == "CUDA"
    assert package_sources.detect_nvidia_driver("/usr/bin/nvidia-smi", False) == NVIDIA_DRIVER
    assert package_sources.detect_nvidia_driver(None, True) == (
        f"NVIDIA driver found ({package_sources.PROC_NVIDIA_DRIVER})")
    assert package_sources.detect_nvidia_driver(None, False) == ""


PIP_TORCH_OUTPUT = [  # what pip 23 prints into a pipe (no terminal: its bar is drawn once, when a download ends)
    "Collecting torch",
    "  Downloading torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl.metadata (29 kB)",
    "  Downloading torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl (191.8 MB)",
    "     " + "━" * 40 + " 95.9/191.8 MB 52.1 MB/s eta 0:00:02",
    "Collecting sympy>=1.13.3 (from torch)",
    "  Downloading sympy-1.14.0-py3-none-any.whl (8.0 MB)",
    "Installing collected packages: sympy, torch",
]


def test_pip_progress_moves_with_bytes_then_installed_packages_in_whole_words():
    progress = pip_output.PipProgress()
    fractions, phases = [], []
    for line in PIP_TORCH_OUTPUT:
        progress.read(line)
        fractions.append(progress.fraction())
        phases.append(progress.phase)
    assert phases[2] == "downloading torch (191.8 MB)"
    assert fractions[3] == pytest.approx(0.6 * 95.9 / 191.8)
    assert fractions[4] == fractions[5] == pytest.approx(0.6)  # a new download grows the total: the bar waits
    assert phases[6].startswith("unpacking and installing 2 packages (sympy, torch)")
    assert progress.fraction(1) == pytest.approx(0.8) and fractions == sorted(fractions)
    progress.read("Successfully installed sympy-1.14.0 torch-2.13.0+cpu")
    assert progress.fraction() == 1.0
    long_line = "word " * 40 + "unbreakable" * 3
    shortened = pip_output.words(long_line, 60)
    assert len(shortened) <= 60 and shortened.endswith(" …") and set(shortened[:-2].split()) == {"word"}


def test_remote_sources_look_inside_requirement_and_constraint_files(tmp_path):
    """pip reads -r/-c files, so an index or a web address inside one goes online too (nested files included,
    relative to the file that names them); an unreadable or looping file is a user error, not a traceback."""
    remote_sources = package_sources.remote_sources
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.txt").write_text("# pinned\n--index-url https://example.invalid/simple  # a mirror\n")
    (tmp_path / "outer.txt").write_text("numpy==2.1\n-r sub/inner.txt\n")
    (tmp_path / "offline.txt").write_text("--no-index\n--find-links /wheels\nnumpy\n")
    (tmp_path / "web.txt").write_text("git+https://example.invalid/x.git#egg=x\n")
    for spelling in (["-r", str(tmp_path / "outer.txt")], [f"-r{tmp_path / 'outer.txt'}"],
                     [f"--requirement={tmp_path / 'outer.txt'}"], ["--constraint", str(tmp_path / "outer.txt")]):
        assert remote_sources(["--no-index", *spelling]) == ["https://example.invalid/simple"]
    assert remote_sources(["-r", str(tmp_path / "offline.txt")]) == []
    assert remote_sources(["--no-index", "-c", str(tmp_path / "web.txt")]) == ["git+https://example.invalid/x.git#egg=x"]
    (tmp_path / "loop.txt").write_text(f"-r {tmp_path / 'loop.txt'}\n")
    for arguments, words in ((["-r", str(tmp_path / "missing.txt")], "cannot be read"),
                             (["-r", str(tmp_path / "loop.txt")], "nest more than")):
        with pytest.raises(HyMotionError) as raised:
            remote_sources(["--no-index", *arguments])
        assert raised.value.code == "bad_request" and words in raised.value.message and raised.value.hint
