"""PyTorch's package index settings (issue 26, point 11): PyTorch's own addresses are the defaults, a pasted whole
``pip3 install ... --index-url URL`` command or an address without its scheme is cleaned, and what is not an address
is refused with what to paste instead, before Install Backend runs pip."""

from __future__ import annotations

import pytest

from hymotion.shared.errors import HyMotionError
from hymotion_addon.core import package_sources

CPU = package_sources.CPU_INDEX_SETTING


@pytest.mark.parametrize("pasted", [
    "pip3 install torch torchvision --index-url https://download.pytorch.org/whl/cpu",
    "pip3 install torch --index-url=https://download.pytorch.org/whl/cpu",
    "  https://download.pytorch.org/whl/cpu  ",
    "download.pytorch.org/whl/cpu",
    "'https://download.pytorch.org/whl/cpu'",
    "pip install torch -i download.pytorch.org/whl/cpu",
])
def test_a_pasted_command_or_an_address_without_scheme_gives_the_address(pasted):
    assert package_sources.clean_index_address(pasted, CPU) == "https://download.pytorch.org/whl/cpu"


def test_local_and_empty_addresses_stay_as_they_are():
    assert package_sources.clean_index_address("file:///mirror/cpu", CPU) == "file:///mirror/cpu"
    assert package_sources.clean_index_address("http://localhost:8080/simple", CPU) == "http://localhost:8080/simple"
    assert package_sources.clean_index_address("   ", CPU) == ""


@pytest.mark.parametrize("pasted, words", [
    ("pip3 install torch torchvision", "a command without --index-url"),
    ("cpu", "not a package index address"),
    ("ftp://example.invalid/cpu", "not a package index address"),
    ("https://", "not a package index address"),
    ("https://nohost/whl", "has no host name"),
])
def test_what_is_not_an_address_is_refused_with_what_to_paste(pasted, words):
    with pytest.raises(HyMotionError, match=words) as caught:
        package_sources.clean_index_address(pasted, CPU)
    assert CPU in caught.value.message and "--index-url" in caught.value.hint
    build = package_sources.choose_torch_build("Linux", "", cpu_index_url=pasted)
    assert build.bad_address == caught.value.message and build.index_url == ""


def test_pytorchs_own_indexes_are_the_defaults_and_a_gpu_less_linux_needs_nothing_else():
    build = package_sources.choose_torch_build("Linux", "", cpu_index_url=package_sources.PYTORCH_CPU_INDEX,
                                               cuda_index_url=package_sources.PYTORCH_CUDA_INDEX)
    assert build.kind == "CPU" and build.missing == "" and build.index_url == "https://download.pytorch.org/whl/cpu"
    assert set(package_sources.PYTORCH_CUDA_INDEXES.values()) >= {package_sources.PYTORCH_CUDA_INDEX}
    assert all(url.startswith("https://download.pytorch.org/whl/cu")
               for url in package_sources.PYTORCH_CUDA_INDEXES.values())
