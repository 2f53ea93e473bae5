"""Where the backend's packages come from: which PyTorch build this machine needs (CPU, or CUDA for the NVIDIA
driver found), its package index, the user's Extra pip Arguments, and which of them go online (Blender's Allow Online
Access decides whether they may)."""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
from dataclasses import dataclass
from typing import Sequence

from hymotion.shared.errors import HyMotionError, bad_request


def parse_pip_arguments(text: str, windows: bool = os.name == "nt") -> list[str]:
    """The Extra pip Arguments as a list, split like the system's shell does (on Windows a backslash is part of a
    path, not an escape); bad quoting is a user error with a hint, not a traceback."""
    try:
        arguments = shlex.split(text, posix=not windows)
    except ValueError as error:
        raise bad_request(
            f"Extra pip Arguments cannot be read: {error} in {text.strip()!r}.",
            "Close the quote or remove it; put a path with spaces in one pair of quotes, e.g. "
            "--find-links \"/path/with spaces\".",
        ) from None
    if windows:
        arguments = [argument[1:-1] if len(argument) > 1 and argument[0] == argument[-1] and argument[0] in "\"'"
                     else argument for argument in arguments]
    return arguments


_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


_INDEX_OPTIONS = ("--index-url", "-i")


def remote_sources(extra_pip_args: Sequence[str], torch_index_url: str = "") -> list[str]:
    """Where the install's pip calls would reach over the network; empty when it needs no network.

    Every URL whose scheme is not ``file`` counts (an index, ``--find-links https://…``, a ``git+https`` requirement),
    wherever it stands, ``--no-index`` or not: pip still fetches ``--find-links`` pages beside it. pip's default index
    counts unless ``--no-index`` or an ``--index-url`` of the arguments replaces it. pip's own configuration files and
    PIP_* variables are not read here.
    """
    extra_pip_args = with_requirement_files(extra_pip_args)
    remote = [
        argument for argument in [*extra_pip_args, torch_index_url]
        if any(scheme.lower() != "file" for scheme in _URL_SCHEME.findall(argument))
    ]
    replaces_default_index = any(
        argument == "--no-index" or argument.startswith(_INDEX_OPTIONS) for argument in extra_pip_args
    )
    if not replaces_default_index:
        remote.append("pip's default package index (no --no-index or --index-url in Extra pip Arguments)")
    return remote


_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
# Requirement files may name others (-r base.txt); deeper than this is a loop or a mistake.
MAX_REQUIREMENT_FILE_DEPTH = 10


def with_requirement_files(arguments: Sequence[str], folder: str = "", depth: int = 0) -> list[str]:
    """``arguments`` followed by what the requirement and constraint files they name hold (``-r FILE``,
    ``--requirement=FILE``, ``-rFILE``, the same for ``-c``), read the way pip reads them (comments and blank lines
    skipped, options allowed, nested files relative to the file naming them), so an index or a web address inside
    such a file counts as going online too. A file that cannot be read is a user error: pip would fail on it as well.
    A file given by a web address is not fetched: its address already counts."""
    found = list(arguments)
    for position, argument in enumerate(arguments):
        path = _file_option_value(argument, arguments[position + 1] if position + 1 < len(arguments) else None)
        if path is None or _URL_SCHEME.match(path):
            continue
        if depth >= MAX_REQUIREMENT_FILE_DEPTH:
            raise bad_request(f"Requirement files nest more than {MAX_REQUIREMENT_FILE_DEPTH} deep at {path!r}.",
                              "Check for a file that names itself, directly or through another.")
        full = os.path.join(folder, os.path.expanduser(path))
        try:
            with open(full, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            raise bad_request(f"Extra pip Arguments name {path!r}, which cannot be read ({error}).",
                              "Give the full path of an existing requirements file, or remove the option.") from None
        inner: list[str] = []
        for line in text.splitlines():
            line = re.sub(r"(^|\s)#.*", "", line).strip()
            if line:
                inner.extend(parse_pip_arguments(line))
        found.extend(with_requirement_files(inner, os.path.dirname(full), depth + 1))
    return found


def _file_option_value(argument: str, following: str | None) -> str | None:
    """The file of a ``-r``/``-c`` option in any of pip's spellings, else None."""
    for option in _FILE_OPTIONS:
        if argument == option:
            return following
        if option.startswith("--") and argument.startswith(option + "="):
            return argument[len(option) + 1:]
        if not option.startswith("--") and argument.startswith(option) and len(argument) > len(option):
            return argument[len(option):]
    return None


AUTO, CPU_BUILD, CUDA_BUILD, DEFAULT_BUILD = "AUTO", "CPU", "CUDA", "DEFAULT"


PROC_NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def detect_nvidia_driver(nvidia_smi: str | None, proc_driver_present: bool) -> str:
    """Why this machine has an NVIDIA driver (its ``nvidia-smi`` tool, Linux's /proc entry), '' when it has none."""
    if nvidia_smi:
        return f"NVIDIA driver found ({nvidia_smi})"
    if proc_driver_present:
        return f"NVIDIA driver found ({PROC_NVIDIA_DRIVER})"
    return ""


def this_machine_nvidia_driver() -> str:
    """:func:`detect_nvidia_driver` for this machine."""
    return detect_nvidia_driver(shutil.which("nvidia-smi"), os.path.exists(PROC_NVIDIA_DRIVER))


def system_name() -> str:
    return platform.system()


@dataclass(frozen=True)
class InstallSize:
    """What an install downloads and takes on disk (environment with PyTorch and the backend), and who measured it."""

    download_gb: float
    disk_gb: float
    source: str


INSTALL_SIZES: dict[tuple[str, str], InstallSize] = {
    ("Linux", CUDA_BUILD): InstallSize(2.7, 5.9, "measured in issue 18: torch 2.13.0 with its CUDA 12 packages"),
    ("Linux", CPU_BUILD): InstallSize(0.3, 1.4, "measured: torch 2.13.0+cpu and the backend, Python 3.11"),
}


def measured_sizes() -> str:
    """Every measured size in one line, e.g. for a tooltip."""
    return "; ".join(f"{system} {kind} build: {size.download_gb:.1f} GB to download, {size.disk_gb:.1f} GB on disk"
                     for (system, kind), size in INSTALL_SIZES.items())


@dataclass(frozen=True)
class TorchBuild:
    """The PyTorch build an install gets, why, and the package index it comes from ('' = pip's default index).

    ``missing`` is set when the build needs an index the user has not given yet: the install waits for it."""

    kind: str
    reason: str
    index_url: str = ""
    index_setting: str = ""
    missing: str = ""
    bad_address: str = ""
    """Set (with ``missing`` as its hint) when the index setting holds something that is not an address."""

    @property
    def label(self) -> str:
        return {CPU_BUILD: "CPU build", CUDA_BUILD: "CUDA build"}.get(self.kind, "default build")

    def size(self, system: str) -> InstallSize | None:
        return INSTALL_SIZES.get((system, self.kind))


CPU_INDEX_SETTING = "PyTorch CPU Index"


CUDA_INDEX_SETTING = "PyTorch CUDA Index"


PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
"""PyTorch's own package index for its CPU build, as its Get Started page gives it (Compute Platform: CPU)."""
PYTORCH_CUDA_INDEXES = {
    "12.6": "https://download.pytorch.org/whl/cu126",
    "12.8": "https://download.pytorch.org/whl/cu128",
    "13.0": "https://download.pytorch.org/whl/cu130",
}
"""PyTorch's own package indexes for its CUDA builds, one per CUDA version on its Get Started page."""
PYTORCH_CUDA_INDEX = PYTORCH_CUDA_INDEXES["12.8"]
"""The default CUDA index: 12.8 runs on the NVIDIA drivers of the last years (13.0 needs a driver from 2025 on)."""
_INDEX_OPTION_NAMES = ("--index-url", "-i", "--extra-index-url")
_HOST = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d+)?(/\S*)?$")


def clean_index_address(text: str, setting: str) -> str:
    """The package index address in a setting, cleaned: a pasted whole ``pip3 install ... --index-url URL`` command
    gives its URL, an address without its scheme gets https://, quotes and spaces go. '' stays '' (no index).
    Anything else is a bad request that says what was wrong and what to paste instead."""
    text = text.strip()
    if not text:
        return ""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    address = words[0] if len(words) == 1 else ""
    for index, word in enumerate(words):
        option, equals, value = word.partition("=")
        if option in _INDEX_OPTION_NAMES and equals:
            address = value
        elif word in _INDEX_OPTION_NAMES and index + 1 < len(words):
            address = words[index + 1]
    example = PYTORCH_CPU_INDEX if setting == CPU_INDEX_SETTING else PYTORCH_CUDA_INDEX
    hint = (f"Paste the address after --index-url from {_INDEX_SOURCE}, e.g. {example}, or the whole pip3 install "
            "command; empty the field for no index of its own.")
    if not address:
        raise bad_request(f"{setting} holds a command without --index-url: {text!r}.", hint)
    if "://" not in address and _HOST.match(address):
        address = f"https://{address}"
    scheme = _URL_SCHEME.match(address)
    rest = address[scheme.end():] if scheme else ""
    if scheme is None or scheme.group(1).lower() not in ("http", "https", "file") or not rest.strip("/"):
        raise bad_request(f"{setting} is not a package index address: {address!r}.", hint)
    if scheme.group(1).lower() != "file" and not _HOST.match(rest):
        raise bad_request(f"{setting} is not a package index address: {address!r} has no host name.", hint)
    return address


_INDEX_SOURCE = "PyTorch's 'Get Started' page (choose Pip and the compute platform; copy the address after --index-url)"


def choose_torch_build(system: str, nvidia_driver: str, override: str = AUTO, cpu_index_url: str = "",
                       cuda_index_url: str = "") -> TorchBuild:
    """The PyTorch build for a machine: CUDA with an NVIDIA driver, else CPU (macOS: the one default build).

    A pure function of its inputs, so every machine can be tried in a test. pip's default torch is a CUDA build on
    Linux (about 4 GB of it useless without an NVIDIA GPU) and a CPU build on Windows; each build that the default
    index does not serve needs its index URL, which the user copies from PyTorch's site (the add-on names no package
    host itself).
    """
    if system == "Darwin":
        return TorchBuild(DEFAULT_BUILD, "macOS has one PyTorch build (it uses the Metal GPU on Apple silicon).")
    if system not in ("Linux", "Windows"):
        return TorchBuild(DEFAULT_BUILD, f"No CPU/CUDA choice is known for {system or 'this system'}.")
    if override == AUTO:
        kind = CUDA_BUILD if nvidia_driver else CPU_BUILD
        reason = (f"{nvidia_driver}." if nvidia_driver
                  else "No NVIDIA driver found (no nvidia-smi, no /proc/driver/nvidia), so a CUDA build could "
                       "not use a GPU here.")
    else:
        kind = override
        reason = "Chosen in PyTorch Build."
    index_url, setting = (cpu_index_url, CPU_INDEX_SETTING) if kind == CPU_BUILD else (cuda_index_url,
                                                                                        CUDA_INDEX_SETTING)
    try:
        index_url = clean_index_address(index_url, setting)
    except HyMotionError as error:
        return TorchBuild(kind, reason, "", setting, error.hint, error.message)
    default_serves_it = (system, kind) in (("Linux", CUDA_BUILD), ("Windows", CPU_BUILD))
    missing = ""
    if not index_url and not default_serves_it:
        missing = (f"The {'CPU' if kind == CPU_BUILD else 'CUDA'} build of PyTorch for {system} comes from its own "
                   f"package index. Paste its address into {setting} (Installation Options), from {_INDEX_SOURCE}; "
                   f"or set PyTorch Build to the other build.")
    return TorchBuild(kind, reason, index_url, setting, missing)
