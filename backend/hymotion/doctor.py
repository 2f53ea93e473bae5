"""`hymotion doctor`: can this machine generate, and if not, what exactly to do about it.

Local text-to-motion fails in the same few ways: a driver too old for the installed torch, a CPU-only torch on a
machine with a GPU, VRAM held by other programs, half-downloaded or Git-LFS-pointer weights, prompts the model cannot
follow. Each check here turns one of those into a finding (OK / WARN / FAIL) with one line of advice. FAIL means
generation cannot work until it is fixed; the exit code is 1 exactly when a FAIL is present.

Every heavy or optional import (torch, NVML, huggingface_hub, the memory plans, the pipeline) is guarded: a doctor
that crashes on the problem it should diagnose is useless. ``--json`` prints a self-contained report (its schema is
documented in docs/troubleshooting.md) that the Blender add-on shows and copies.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from . import __version__, weights
from .jobs import DEFAULT_STEPS

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SCHEMA = "hymotion-doctor/1"
GIB = 1024**3

MIN_PYTHON = (3, 11)
MIN_TRANSFORMERS = (4, 51)  # first release with Qwen3
REQUIRED_PACKAGES = ("transformers", "diffusers", "accelerate", "safetensors", "huggingface_hub", "numpy", "scipy")
TORCH_CUDA_INSTALL = "pip install torch"
TORCH_CPU_INSTALL = "pip install torch==2.13.0"
OTHER_PROCESSES_WARN_BYTES = GIB // 2
HOST_RAM_OVERHEAD = 2 * GIB
HUB_TIMEOUT_S = 5.0
SMOKE_PROMPT = "a person waves"
SMOKE_SECONDS = 2.0
TINY_SMOKE_STEPS = 4
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX_BYTES = 1024
# What a first download needs on disk when the hub cannot be asked (bytes, rounded up from the published files).
DOWNLOAD_SIZE_ESTIMATES = {
    "HY-Motion-1.0-Lite": 1_900_000_000,
    "HY-Motion-1.0": 4_300_000_000,
    "Qwen3-8B": 16_500_000_000,
    "clip-vit-large-patch14": 1_750_000_000,
}
_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


@dataclass
class Finding:
    """One line of the report. ``name`` is a stable identifier; ``data`` holds the numbers behind ``detail``."""

    name: str
    status: str
    detail: str
    advice: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class GpuProcess:
    pid: int
    name: str
    used_bytes: int | None


@dataclass
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    processes: list[GpuProcess]


@dataclass
class NvmlReport:
    driver_version: str
    cuda_driver_version: str | None
    gpus: list[GpuInfo]


@dataclass
class FileProblem:
    path: str
    problem: str


@dataclass
class WeightGroup:
    """One thing ``hymotion download`` fetches: a model variant's folder or a text encoder."""

    label: str
    repo_id: str
    folder: Path | None
    path_in_repo: str
    required_for: str  # "lite", "standard" or "all"


@dataclass
class _State:
    """What earlier checks learned and later ones use."""

    model_dir: str | None
    variant: str | None
    online: bool
    torch: ModuleType | None = None
    nvml: NvmlReport | None = None
    cuda_usable: bool = False
    complete_variants: list[str] = field(default_factory=list)
    encoders_complete: bool = False
    plan: str | None = None
    device: str = "cpu"
    hub_files: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def run_checks(
    model_dir: str | None = None,
    variant: str | None = None,
    online: bool | None = None,
    verify_hashes: bool = False,
    tiny_smoke: bool = True,
    real_smoke: bool = False,
) -> list[Finding]:
    """All findings, in the order a person would fix them."""
    if online is None:
        online = not _hub_offline()
    state = _State(model_dir=model_dir, variant=variant, online=online)
    findings = [check_python(), check_packages()]
    findings.append(check_torch(state))
    findings.extend(check_gpu(state))
    findings.append(check_host_ram(state))
    weight_findings, groups = check_weights(state, verify_hashes)
    findings.append(check_disk(state, groups))
    findings.extend(weight_findings)
    findings.append(check_plan(state))
    if tiny_smoke:
        findings.append(check_tiny_smoke(state))
    if real_smoke:
        findings.append(check_real_smoke(state))
    return findings


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(finding.status == FAIL for finding in findings) else 0


def check_python() -> Finding:
    version = platform.python_version()
    where = f"{platform.system()} {platform.release()} {platform.machine()}, {sys.executable}"
    data = {"version": version, "executable": sys.executable, "platform": platform.platform()}
    if sys.version_info[:2] < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        return Finding("python", FAIL, f"Python {version} ({where})",
                       f"The backend needs Python {wanted} or newer: create its environment with python{wanted}.", data)
    return Finding("python", OK, f"Python {version} ({where})", data=data)


def check_packages() -> Finding:
    versions: dict[str, str | None] = {}
    for package in REQUIRED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    missing = [name for name, version in versions.items() if version is None]
    listed = ", ".join(f"{name} {version or 'missing'}" for name, version in versions.items())
    if missing:
        return Finding("packages", FAIL, listed,
                       f"Install the backend's dependencies: pip install {' '.join(missing)} "
                       "(or reinstall the backend package).", {"versions": versions})
    if _version_tuple(versions["transformers"] or "") < MIN_TRANSFORMERS:
        wanted = ".".join(map(str, MIN_TRANSFORMERS))
        return Finding("packages", FAIL, listed,
                       f"transformers {versions['transformers']} cannot load Qwen3: "
                       f"pip install 'transformers>={wanted}'",
                       {"versions": versions})
    return Finding("packages", OK, listed, data={"versions": versions})


def _import_torch() -> ModuleType | str:
    """torch, or why it cannot be imported (missing, or a broken install such as a DLL load failure)."""
    try:
        return importlib.import_module("torch")
    except Exception as error:  # ImportError, OSError from a broken CUDA library, anything torch's init raises
        return f"{type(error).__name__}: {error}"


def check_torch(state: _State) -> Finding:
    torch = _import_torch()
    if isinstance(torch, str):
        return Finding("torch", FAIL, f"torch cannot be imported ({torch})",
                       f"Install torch in this environment: {TORCH_CUDA_INSTALL} (NVIDIA GPU, CUDA build) or "
                       f"{TORCH_CPU_INSTALL} (CPU only).", {"version": None, "cuda_build": None})
    state.torch = torch
    cuda_build = torch.version.cuda
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU-only build"
    return Finding("torch", OK, f"torch {torch.__version__} ({build})",
                   data={"version": torch.__version__, "cuda_build": cuda_build})


def _read_nvml() -> NvmlReport | str:
    """What NVML says about the driver and GPUs, or why it cannot say (not installed, no driver, no GPU)."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as error:
        return f"NVML did not start ({error}); no NVIDIA driver is loaded"
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda_number = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            cuda_driver = f"{cuda_number // 1000}.{cuda_number % 1000 // 10}"
        except Exception:
            cuda_driver = None
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            processes: dict[int, GpuProcess] = {}
            for lister in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    running = lister(handle)
                except Exception:
                    continue
                for process in running:
                    used = getattr(process, "usedGpuMemory", None)
                    used = int(used) if isinstance(used, int) and used < 2**63 else None
                    processes[process.pid] = GpuProcess(process.pid, _process_name(pynvml, process.pid), used)
            gpus.append(GpuInfo(index, _text(pynvml.nvmlDeviceGetName(handle)), int(memory.total), int(memory.free),
                                list(processes.values())))
        return NvmlReport(driver, cuda_driver, gpus)
    except Exception as error:
        return f"NVML query failed ({error})"
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _process_name(pynvml: ModuleType, pid: int) -> str:
    try:
        return os.path.basename(_text(pynvml.nvmlSystemGetProcessName(pid)))
    except Exception:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return "unknown"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_gpu(state: _State) -> list[Finding]:
    """CUDA as torch sees it, and the GPU, driver and VRAM as NVML sees them."""
    torch = state.torch
    nvml = _read_nvml()
    state.nvml = nvml if isinstance(nvml, NvmlReport) else None
    nvml_gpus = state.nvml.gpus if state.nvml else []
    cuda_build = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
    cuda_available = bool(torch and torch.cuda.is_available())
    state.cuda_usable = cuda_available
    state.device = "cuda" if cuda_available else "cpu"
    findings = []

    if cuda_available:
        names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        findings.append(Finding("cuda", OK, f"torch uses CUDA {cuda_build} on {', '.join(names)}",
                                data={"available": True, "runtime": cuda_build, "devices": names}))
    elif torch is None:
        findings.append(Finding("cuda", WARN, "unknown: torch is not installed", data={"available": False}))
    elif nvml_gpus and not cuda_build:
        findings.append(Finding(
            "cuda", WARN, f"torch is a CPU-only build but an NVIDIA GPU is present ({nvml_gpus[0].name})",
            f"Install a CUDA build of torch to use the GPU: {TORCH_CUDA_INSTALL} (on Windows pick the CUDA build "
            "with the selector on pytorch.org). Until then generation runs on the CPU, minutes per clip.",
            {"available": False, "runtime": None},
        ))
    elif nvml_gpus:
        driver_cuda = state.nvml.cuda_driver_version if state.nvml else None
        findings.append(Finding(
            "cuda", WARN,
            f"torch was built for CUDA {cuda_build} but cannot use the GPU (the driver supports CUDA "
            f"{driver_cuda or 'unknown'}, driver {state.nvml.driver_version if state.nvml else 'unknown'})",
            _driver_advice(cuda_build, driver_cuda) + " Until then generation runs on the CPU.",
            {"available": False, "runtime": cuda_build, "driver_cuda": driver_cuda},
        ))
    else:
        findings.append(Finding("cuda", OK, "no CUDA GPU visible to torch: generation will use the cpu plan",
                                data={"available": False, "runtime": cuda_build}))

    if isinstance(nvml, str):
        if cuda_available:
            free, total = torch.cuda.mem_get_info()
            findings.append(Finding(
                "gpu", WARN, f"{nvml}; torch reports {_gib(free)} free of {_gib(total)}",
                "pip install nvidia-ml-py to see the driver version and which programs hold VRAM.",
                {"nvml": False, "free_bytes": int(free), "total_bytes": int(total)},
            ))
        else:
            findings.append(Finding(
                "gpu", WARN, f"No NVIDIA GPU found ({nvml})",
                "Generation will run on the CPU (plan cpu): expect minutes per clip. With an NVIDIA GPU, install "
                "its driver and nvidia-ml-py.", {"nvml": False, "gpus": []},
            ))
        return findings
    if not nvml_gpus:
        findings.append(Finding("gpu", WARN, f"NVML works (driver {nvml.driver_version}) but lists no GPU",
                                "Generation will run on the CPU (plan cpu).", {"nvml": True, "gpus": []}))
        return findings

    own_pid = os.getpid()
    for gpu in nvml_gpus:
        others = [process for process in gpu.processes if process.pid != own_pid]
        held = sum(process.used_bytes or 0 for process in others)
        holders = ", ".join(
            f"{process.name} (pid {process.pid}, {_gib(process.used_bytes) if process.used_bytes else 'size hidden'})"
            for process in sorted(others, key=lambda process: -(process.used_bytes or 0))
        )
        cuda_driver = nvml.cuda_driver_version or "?"
        detail = (f"GPU {gpu.index}: {gpu.name}, driver {nvml.driver_version} (CUDA {cuda_driver}), "
                  f"{_gib(gpu.free_bytes)} free of {_gib(gpu.total_bytes)}")
        detail += f"; held by {holders}" if holders else "; no other program holds VRAM"
        status, advice = OK, ""
        if held >= OTHER_PROCESSES_WARN_BYTES:
            status = WARN
            advice = ("Other programs hold VRAM (listed above): close them (browsers, games, other AI tools) to get "
                      "a faster memory plan.")
        data = asdict(gpu) | {"driver_version": nvml.driver_version, "cuda_driver_version": nvml.cuda_driver_version,
                              "held_by_others_bytes": held}
        findings.append(Finding(f"gpu:{gpu.index}", status, detail, advice, data))
    return findings


def _driver_advice(cuda_build: str | None, driver_cuda: str | None) -> str:
    if cuda_build and driver_cuda and _version_tuple(driver_cuda) < _version_tuple(cuda_build)[:1] + (0,):
        return (f"The NVIDIA driver is too old for this torch (needs CUDA {cuda_build.split('.')[0]}.x, driver offers "
                f"{driver_cuda}): update the driver, or install a torch built for CUDA {driver_cuda.split('.')[0]}.")
    if cuda_build and driver_cuda and _version_tuple(driver_cuda) < _version_tuple(cuda_build):
        return (f"The driver (CUDA {driver_cuda}) is older than torch's CUDA {cuda_build}: update the NVIDIA driver.")
    return ("Check that CUDA_VISIBLE_DEVICES does not hide the GPU and that the NVIDIA driver is loaded "
            "(nvidia-smi should list the GPU); reboot after a driver update.")


def host_memory() -> tuple[int, int] | None:
    """(total, available) bytes of host RAM without psutil, or None where the platform hides it."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        values = {}
        for line in meminfo.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
        if "MemTotal" in values:
            return values["MemTotal"], values.get("MemAvailable", values.get("MemFree", 0))
    if sys.platform == "win32":
        return _windows_memory()
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * page
        except (ValueError, OSError):
            available = total
        return total, available
    except (ValueError, OSError, AttributeError):
        return None


def _windows_memory() -> tuple[int, int] | None:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong), ("total_phys", ctypes.c_ulonglong),
                    ("avail_phys", ctypes.c_ulonglong), ("total_page", ctypes.c_ulonglong),
                    ("avail_page", ctypes.c_ulonglong), ("total_virtual", ctypes.c_ulonglong),
                    ("avail_virtual", ctypes.c_ulonglong), ("avail_extended", ctypes.c_ulonglong)]

    status = MemoryStatus()
    status.length = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.total_phys), int(status.avail_phys)


def _host_ram_needed(memory: ModuleType | None, variant: str) -> int:
    """Bytes of RAM the text encoder and DiT occupy while they wait on the host (offload, stream and cpu plans)."""
    if memory is None:
        qwen, lite = DOWNLOAD_SIZE_ESTIMATES["Qwen3-8B"], DOWNLOAD_SIZE_ESTIMATES["HY-Motion-1.0-Lite"]
        return qwen + 2 * lite + HOST_RAM_OVERHEAD
    dit = memory.DIT_PARAMS.get(variant, memory.DIT_PARAMS["lite"]) * 4
    return memory.QWEN_BASE_PARAMS * 2 + memory.CLIP_TEXT_PARAMS * 4 + dit + HOST_RAM_OVERHEAD


def check_host_ram(state: _State) -> Finding:
    measured = host_memory()
    if measured is None:
        return Finding("ram", WARN, "host RAM size unknown on this platform", data={})
    total, available = measured
    needed = _host_ram_needed(_import_memory(state), state.variant or "lite")
    data = {"total_bytes": total, "available_bytes": available, "needed_bytes": needed}
    detail = f"{_gib(available)} available of {_gib(total)}"
    if available < needed:
        return Finding("ram", WARN, detail + f"; the text encoder and model need about {_gib(needed)} on the host",
                       "Close programs before generating; on the gpu plan the weights pass through RAM only while "
                       "loading, the other plans keep the text encoder (Qwen3-8B) there.", data)
    return Finding("ram", OK, detail, data=data)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _weight_groups(model_dir: str | None) -> list[WeightGroup]:
    """What must exist, and where: the ``--model-dir`` layout, or the Hugging Face cache's snapshots."""
    groups = []
    if model_dir:
        root = Path(model_dir).expanduser()
        for variant, sub in weights.VARIANT_FOLDERS.items():
            groups.append(WeightGroup(sub, weights.MODEL_REPO_ID, root / sub, sub, variant))
        for repo_id, folder in weights.TEXT_ENCODER_FOLDERS.items():
            groups.append(WeightGroup(folder, repo_id, root / folder, "", "all"))
        return groups
    model_snapshot = weights.cached_snapshot(weights.MODEL_REPO_ID)
    for variant, sub in weights.VARIANT_FOLDERS.items():
        groups.append(WeightGroup(sub, weights.MODEL_REPO_ID, model_snapshot / sub if model_snapshot else None, sub,
                                  variant))
    for repo_id, folder in weights.TEXT_ENCODER_FOLDERS.items():
        groups.append(WeightGroup(folder, repo_id, weights.cached_snapshot(repo_id), "", "all"))
    return groups


def _hub_cache_dir() -> Path:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def _hub_listing(repo_id: str) -> dict[str, dict[str, Any]] | str:
    """{path: {"size", "sha256"}} as the hub lists the repository, or why it could not be asked."""
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo_id, files_metadata=True, timeout=HUB_TIMEOUT_S)
    except Exception as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    listing = {}
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        listing[sibling.rfilename] = {
            "size": sibling.size if sibling.size is not None else (lfs.size if lfs else None),
            "sha256": lfs.sha256 if lfs else None,
        }
    return listing


def _expected_files(group: WeightGroup, hub: dict[str, dict[str, Any]] | None) -> list[str]:
    """Paths inside the group's folder that must exist for it to load."""
    folder = group.folder
    if group.path_in_repo:
        converted = folder is not None and (folder / "transformer" / "config.json").is_file()
        if converted:
            files = ["transformer/config.json", "conditioning.safetensors"]
            return files + _safetensors_files(folder / "transformer", "transformer/", "diffusion_pytorch_model")
        return ["config.yml", "latest.ckpt"]
    files = ["config.json", "tokenizer_config.json"]
    present = folder is not None and (folder / "tokenizer.json").is_file()
    if present or (hub and "tokenizer.json" in hub):
        files.append("tokenizer.json")
    else:
        files += ["vocab.json", "merges.txt"]
    if hub:
        listed = [name for name in hub if name.endswith(".safetensors") and "/" not in name]
        index_listed = [name for name in hub if name.endswith(".safetensors.index.json") and "/" not in name]
        wanted = [name for name in listed + index_listed
                  if any(fnmatch.fnmatch(name, pattern) for pattern in weights.TEXT_ENCODER_PATTERNS)]
        return files + sorted(set(wanted) - set(files))
    return files + (_safetensors_files(folder, "", "model") if folder else ["model.safetensors"])


def _safetensors_files(folder: Path, prefix: str, stem: str) -> list[str]:
    """The index and the shards it names, or the single weights file."""
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, AttributeError):
            shards = []
        return [prefix + index.name] + [prefix + shard for shard in shards]
    return [f"{prefix}{stem}.safetensors"]


def inspect_file(path: Path, expected_size: int | None = None, expected_sha256: str | None = None) -> str | None:
    """Why ``path`` cannot be loaded, or None when it looks whole.

    Without hub metadata, completeness is read from the file itself: a safetensors header must parse and every
    tensor's byte range fit in the file; a torch checkpoint's zip directory (at the end of the file) must be readable.
    """
    if not path.is_file():
        return "missing"
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(LFS_POINTER_MAX_BYTES)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if size < LFS_POINTER_MAX_BYTES and head.startswith(LFS_POINTER_PREFIX):
        real = next((line.split()[1] for line in head.decode("utf-8", "replace").splitlines()
                     if line.startswith("size ") and len(line.split()) == 2), None)
        return f"Git LFS pointer, not the file ({_gib(int(real)) if real and real.isdigit() else 'size unknown'})"
    if size == 0:
        return "empty file"
    if expected_size is not None and size != expected_size:
        relation = "truncated" if size < expected_size else "larger than published"
        return f"{relation}: {size:,} bytes, the hub lists {expected_size:,}"
    problem = None
    if path.suffix == ".safetensors":
        problem = _safetensors_problem(path, size)
    elif path.suffix in {".ckpt", ".pt", ".pth"} or (path.suffix == ".bin" and zipfile.is_zipfile(path)):
        problem = _zip_problem(path)
    elif path.suffix == ".json":
        problem = _json_problem(path)
    elif path.suffix in {".yml", ".yaml"}:
        problem = _yaml_problem(path)
    if problem is None and expected_sha256:
        digest = _sha256(path)
        if digest != expected_sha256:
            problem = f"checksum differs from the hub's (sha256 {digest[:12]}…, expected {expected_sha256[:12]}…)"
    return problem


def _safetensors_problem(path: Path, size: int) -> str | None:
    try:
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"truncated: {size} bytes, shorter than a safetensors header"
            (header_length,) = struct.unpack("<Q", prefix)
            if header_length > size - 8:
                return f"truncated: the header claims {header_length:,} bytes but the file has {size:,}"
            header = json.loads(handle.read(header_length))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return f"unreadable safetensors header ({error})"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = entry["data_offsets"]
            elements = 1
            for dimension in entry["shape"]:
                elements *= dimension
        except (KeyError, TypeError, ValueError):
            return f"malformed safetensors entry {name!r}"
        width = _SAFETENSORS_DTYPE_BYTES.get(entry.get("dtype"))
        if width is not None and stop - begin != elements * width:
            return f"malformed safetensors entry {name!r} (byte range does not match its shape)"
        end = max(end, stop)
    data_bytes = size - 8 - header_length
    if end > data_bytes:
        return f"truncated: tensors need {end + 8 + header_length:,} bytes, the file has {size:,}"
    return None


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        return "truncated or corrupt: the checkpoint's zip directory is unreadable"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if not entries:
        return "corrupt: the checkpoint holds no data"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"not valid JSON ({str(error).splitlines()[0]})"
    return None


def _yaml_problem(path: Path) -> str | None:
    try:
        import yaml
    except ImportError:
        return None
    try:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as error:
        return f"not valid YAML ({str(error).splitlines()[0]})"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _interrupted_downloads(group: WeightGroup, model_dir: str | None) -> list[str]:
    """Partial files huggingface_hub leaves behind when a download stops (resumed by running the download again)."""
    if model_dir:
        # hymotion download puts the model repository in DIR and each text encoder in DIR/<its folder>.
        local_dir = Path(model_dir).expanduser()
        if not group.path_in_repo:
            local_dir /= group.label
        partial_root = local_dir / ".cache" / "huggingface" / "download"
        pattern = f"{group.path_in_repo}/**/*.incomplete" if group.path_in_repo else "**/*.incomplete"
    else:
        partial_root = _hub_cache_dir() / f"models--{group.repo_id.replace('/', '--')}" / "blobs"
        pattern = "*.incomplete"
    if not partial_root.is_dir():
        return []
    return sorted(str(path) for path in partial_root.glob(pattern))


def _wanted_variant(state: _State) -> str:
    """The variant the user asked for, else the first complete one, else lite (the smaller download)."""
    return state.variant or (state.complete_variants[0] if state.complete_variants else "lite")


def check_weights(state: _State, verify_hashes: bool = False) -> tuple[list[Finding], list[WeightGroup]]:
    """Every variant and text encoder: present, whole and readable, with the command that fixes each gap."""
    groups = _weight_groups(state.model_dir)
    hub_note = ""
    listings: dict[str, dict[str, dict[str, Any]]] = {}
    if state.online:
        for repo_id in dict.fromkeys(group.repo_id for group in groups):
            listing = _hub_listing(repo_id)
            if isinstance(listing, str):
                hub_note = f"hub not reachable ({listing}); checked the files offline"
                state.online = False
                listings.clear()
                break
            listings[repo_id] = listing
    else:
        hub_note = "offline (HF_HUB_OFFLINE or --offline): checked the files without the hub's sizes"
    state.hub_files = listings

    results: dict[str, tuple[list[FileProblem], int]] = {}
    for group in groups:
        listing = listings.get(group.repo_id)
        prefix = f"{group.path_in_repo}/" if group.path_in_repo else ""
        hub = None
        if listing:
            hub = {name[len(prefix):]: meta for name, meta in listing.items() if name.startswith(prefix)}
        problems: list[FileProblem] = []
        total = 0
        for relative in _expected_files(group, hub):
            path = group.folder / relative if group.folder else None
            meta = (hub or {}).get(relative, {})
            if path is None:
                problems.append(FileProblem(relative, "missing"))
                continue
            problem = inspect_file(path, meta.get("size"), meta.get("sha256") if verify_hashes else None)
            if problem:
                problems.append(FileProblem(str(path), problem))
            else:
                total += path.stat().st_size
        for partial in _interrupted_downloads(group, state.model_dir):
            problems.append(FileProblem(partial, "interrupted download (partial file)"))
        results[group.label] = (problems, total)

    def whole(group: WeightGroup) -> bool:
        return not results[group.label][0]

    encoders = [group for group in groups if group.required_for == "all"]
    state.encoders_complete = all(whole(group) for group in encoders)
    state.complete_variants = [group.required_for for group in groups if group.path_in_repo and whole(group)]
    wanted = _wanted_variant(state)
    findings = []
    for group in groups:
        problems, total = results[group.label]
        fix_variant = group.required_for if group.required_for != "all" else wanted
        command = weights.download_command(fix_variant, state.model_dir)
        data = {"folder": str(group.folder) if group.folder else None, "repo_id": group.repo_id,
                "bytes": total, "problems": [asdict(problem) for problem in problems], "fix_command": command}
        where = str(group.folder) if group.folder else f"{group.repo_id} (not in the Hugging Face cache)"
        if not problems:
            findings.append(Finding(f"weights:{group.label}", OK, f"complete, {_gib(total)} in {where}", data=data))
            continue
        nothing_there = all(problem.problem == "missing" for problem in problems) and total == 0
        optional = group.required_for not in ("all", wanted)
        if nothing_there and optional:
            findings.append(Finding(f"weights:{group.label}", OK, "not downloaded (optional variant)",
                                    f"To use it: {command}", data))
            continue
        status = WARN if optional else FAIL
        if nothing_there:
            summary = "not downloaded"
        else:
            summary = "; ".join(f"{Path(problem.path).name}: {problem.problem}" for problem in problems[:4])
            if len(problems) > 4:
                summary += f"; and {len(problems) - 4} more"
        broken = [problem.path for problem in problems if problem.problem not in ("missing",)
                  and not problem.problem.startswith("interrupted")]
        if nothing_there:
            advice = f"Download it: {command}"
        elif broken:
            advice = f"Delete the broken file{'s' if len(broken) > 1 else ''} listed above, then run: {command}"
        else:
            advice = f"Complete the download: {command}"
        findings.append(Finding(f"weights:{group.label}", status, f"{where}: {summary}", advice, data))
    findings.insert(0, Finding("hub", OK, hub_note or "hub reachable: sizes checked against the published files",
                               data={"online": state.online}))
    return findings, groups


def check_disk(state: _State, groups: list[WeightGroup]) -> Finding:
    root = Path(state.model_dir).expanduser() if state.model_dir else _hub_cache_dir()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as error:
        return Finding("disk", WARN, f"cannot read free space at {root} ({error})")
    missing_bytes = 0
    for group in groups:
        if group.required_for not in ("all", _wanted_variant(state)):
            continue
        listing = state.hub_files.get(group.repo_id)
        if group.folder is not None and group.folder.is_dir() and not listing:
            continue
        if listing:
            prefix = f"{group.path_in_repo}/" if group.path_in_repo else ""
            for name, meta in listing.items():
                if name.startswith(prefix) and (meta.get("size") or 0) > 0:
                    present = group.folder / name[len(prefix):] if group.folder else None
                    have = present.stat().st_size if present and present.is_file() else 0
                    missing_bytes += max(0, (meta["size"] or 0) - have)
        else:
            missing_bytes += DOWNLOAD_SIZE_ESTIMATES.get(group.label, 0)
    data = {"path": str(root), "free_bytes": usage.free, "total_bytes": usage.total, "download_bytes": missing_bytes}
    detail = f"{_gib(usage.free)} free at {root}"
    if missing_bytes and usage.free < missing_bytes:
        return Finding("disk", FAIL, detail + f"; the missing weights need about {_gib(missing_bytes)}",
                       "Free disk space, or download elsewhere with --model-dir DIR on a larger drive.", data)
    if missing_bytes:
        detail += f" (the missing weights need about {_gib(missing_bytes)})"
    return Finding("disk", OK, detail, data=data)


def _import_memory(state: _State) -> ModuleType | None:
    if state.torch is None:
        return None
    try:
        return importlib.import_module("hymotion.memory")
    except ImportError:
        return None


def check_plan(state: _State) -> Finding:
    """The memory plan ``auto`` would pick here and the VRAM it expects; also what closing other programs would buy."""
    variant = _wanted_variant(state)
    if not state.cuda_usable:
        state.plan, state.device = "cpu", "cpu"
        return Finding("plan", OK, "auto picks plan cpu (no usable CUDA GPU): expect minutes per clip",
                       data={"plan": "cpu", "device": "cpu", "variant": variant, "expected_vram_bytes": 0})
    memory = _import_memory(state)
    if memory is None:
        return Finding("plan", WARN, "cannot tell which memory plan auto picks: hymotion.memory is unavailable",
                       "Reinstall the backend package.", {"plan": None, "device": state.device})
    try:
        plan = memory.choose_plan("auto", variant)
        report = memory.plan_report(plan, variant)
    except Exception as error:
        return Finding("plan", WARN, f"choosing a memory plan failed ({error})", "", {"plan": None})
    state.plan = plan
    state.device = "cpu" if plan == "cpu" else "cuda"
    expected = max(report["expected_vram_sampling"], report["expected_vram_encoding"])
    data = dict(report, variant=variant, expected_vram_bytes=expected, device=state.device)
    detail = (f"auto picks plan {plan} for {variant} on {report['device']}: expects {_gib(expected)} of VRAM, "
              f"{_gib(report['free_vram'])} free of {_gib(report['total_vram'])}")
    held = sum(_vram_held_by_others(state))
    if held:
        better = memory.choose_plan("auto", variant, memory=(report["free_vram"] + held, report["total_vram"]))
        if better != plan:
            data["plan_without_other_programs"] = better
            return Finding("plan", WARN, detail,
                           f"Other programs hold {_gib(held)} of VRAM; with them closed auto would pick the faster "
                           f"plan {better}.", data)
    if plan == "cpu":
        return Finding("plan", WARN, detail, "Too little free VRAM for any GPU plan: close other GPU programs.", data)
    return Finding("plan", OK, detail, data=data)


def _vram_held_by_others(state: _State) -> list[int]:
    """VRAM held by other processes on the GPU torch uses (device 0 as NVML numbers it)."""
    if not state.nvml or not state.nvml.gpus:
        return []
    own_pid = os.getpid()
    return [process.used_bytes or 0 for process in state.nvml.gpus[0].processes if process.pid != own_pid]


def _import_pipeline(state: _State) -> ModuleType | str:
    if state.torch is None:
        return "torch is not installed"
    try:
        return importlib.import_module("hymotion.pipeline")
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def _run_generation(
    pipeline_module: ModuleType, model: str, model_dir: str | None, device: str | None, steps: int, torch: ModuleType
) -> dict[str, Any]:
    """Load, generate one clip of SMOKE_SECONDS and measure; raises what the pipeline raises."""
    from .jobs import GenerationSettings

    on_cuda = bool(torch.cuda.is_available()) and device != "cpu"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="hymotion-doctor-") as cache_dir:
        started = time.perf_counter()
        pipeline = pipeline_module.load_pipeline(model, model_dir=model_dir, plan="auto", device=device,
                                                 cache_dir=cache_dir)
        loaded = time.perf_counter()
        settings = GenerationSettings(prompts=[SMOKE_PROMPT], durations=[SMOKE_SECONDS], seeds=[0], steps=steps)
        clips = list(pipeline.generate(settings, on_warning=lambda message: None))
        finished = time.perf_counter()
    if len(clips) != 1:
        raise RuntimeError(f"expected one clip, got {len(clips)}")
    frames = len(clips[0].rotations)
    return {
        "plan": pipeline.plan, "device": str(pipeline.device), "frames": frames, "steps": steps,
        "load_seconds": round(loaded - started, 3), "generate_seconds": round(finished - loaded, 3),
        "peak_vram_bytes": int(torch.cuda.max_memory_allocated()) if on_cuda else None,
    }


def check_tiny_smoke(state: _State) -> Finding:
    """A random tiny model on the chosen device: proves torch, the device and the pipeline code work together."""
    pipeline_module = _import_pipeline(state)
    if isinstance(pipeline_module, str):
        return Finding("smoke:tiny", WARN, f"smoke run skipped: the pipeline cannot be imported ({pipeline_module})",
                       "Install torch and the backend's dependencies (see the lines above).")
    try:
        result = _run_generation(pipeline_module, "tiny-random", None, state.device, TINY_SMOKE_STEPS, state.torch)
    except Exception as error:
        return Finding("smoke:tiny", FAIL, f"tiny-model generation on {state.device} failed: {_error_text(error)}",
                       _error_hint(error) or "Run with the same arguments to reproduce; the error above says where.",
                       {"device": state.device, "error": _error_text(error)})
    return Finding("smoke:tiny", OK, f"tiny random model generated {result['frames']} frames on {result['device']} "
                   f"in {result['load_seconds'] + result['generate_seconds']:.1f} s", data=result)


def check_real_smoke(state: _State) -> Finding:
    """The smallest real generation: tells environment problems (this fails) from parameter problems (this works)."""
    variant = _wanted_variant(state)
    if variant not in state.complete_variants or not state.encoders_complete:
        return Finding("smoke:real", FAIL, f"real-model smoke run not possible: the {variant} weights or text encoders "
                       "are missing or broken (see the weights lines)",
                       f"Run: {weights.download_command(variant, state.model_dir)}", {"variant": variant})
    pipeline_module = _import_pipeline(state)
    if isinstance(pipeline_module, str):
        return Finding("smoke:real", FAIL, f"the pipeline cannot be imported ({pipeline_module})",
                       "Install torch and the backend's dependencies (see the lines above).")
    try:
        result = _run_generation(pipeline_module, variant, state.model_dir, None, DEFAULT_STEPS, state.torch)
    except Exception as error:
        return Finding("smoke:real", FAIL, f"{variant}, \"{SMOKE_PROMPT}\", {SMOKE_SECONDS:g} s: "
                       f"{_error_text(error)}", _error_hint(error) or "The error above says where it failed.",
                       {"variant": variant, "error": _error_text(error)})
    peak = f", peak VRAM {_gib(result['peak_vram_bytes'])}" if result["peak_vram_bytes"] is not None else ""
    return Finding("smoke:real", OK,
                   f"{variant}, \"{SMOKE_PROMPT}\", {SMOKE_SECONDS:g} s, 1 seed, {result['steps']} steps on plan "
                   f"{result['plan']}: loaded in {result['load_seconds']:.1f} s, generated in "
                   f"{result['generate_seconds']:.1f} s{peak}", data=dict(result, variant=variant))


def _error_text(error: BaseException) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return message.splitlines()[0]


def _error_hint(error: BaseException) -> str:
    return getattr(error, "hint", "") or ""


def _gib(value: int | float | None) -> str:
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("+")[0].split("."):
        digits = "".join(char for char in part if char.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def report_text(findings: list[Finding]) -> str:
    """The human report; the add-on's "Copy report" button copies this text."""
    width = max((len(finding.name) for finding in findings), default=0)
    lines = [f"hymotion doctor (hymotion {__version__})"]
    for finding in findings:
        lines.append(f"[{finding.status:^4}] {finding.name:<{width}}  {finding.detail}")
        if finding.advice:
            lines.append(f"{'':6} {'':<{width}}  -> {finding.advice}")
    failures = sum(finding.status == FAIL for finding in findings)
    warnings = sum(finding.status == WARN for finding in findings)
    if failures:
        lines.append(f"Generation cannot work yet: fix the {failures} FAIL line{'s' if failures > 1 else ''} above.")
    else:
        lines.append(f"Generation can work ({warnings} warning{'s' if warnings != 1 else ''}).")
    return "\n".join(lines)


def report_json(findings: list[Finding]) -> dict[str, Any]:
    """The ``--json`` document: stable keys (docs/troubleshooting.md), self-contained for the add-on."""
    plan = next((finding.data for finding in findings if finding.name == "plan"), {})
    counts = {status: sum(finding.status == status for finding in findings) for status in (OK, WARN, FAIL)}
    return {
        "schema": SCHEMA,
        "hymotion_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ok": exit_code(findings) == 0,
        "exit_code": exit_code(findings),
        "counts": counts,
        "recommended_plan": plan.get("plan"),
        "recommended_device": plan.get("device"),
        "findings": [asdict(finding) for finding in findings],
        "report_text": report_text(findings),
    }


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", default=None,
                        help="folder holding the weights (default: the Hugging Face cache, as hymotion download)")
    parser.add_argument("--variant", choices=("lite", "standard"), default=None,
                        help="the model variant that must be present (default: either)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the text report")
    parser.add_argument("--smoke", action="store_true",
                        help=f"also run the smallest real generation (\"{SMOKE_PROMPT}\", {SMOKE_SECONDS:g} s, "
                        "one seed) and report its time and peak VRAM")
    parser.add_argument("--offline", action="store_true",
                        help="do not ask the hub for file sizes (also implied by HF_HUB_OFFLINE=1)")
    parser.add_argument("--verify-hashes", action="store_true",
                        help="compare every weight file's SHA-256 with the hub's (reads all ~20 GB)")
    parser.add_argument("--no-tiny-smoke", action="store_true", help="skip the 2-second tiny-model run")


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """Keep stdout for the JSON document alone: libraries print while loading."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def doctor_main(args: argparse.Namespace, print_line: Callable[[str], None] = print) -> int:
    with _stdout_to_stderr(args.json):
        findings = run_checks(
            model_dir=args.model_dir,
            variant=args.variant,
            online=False if args.offline else None,
            verify_hashes=args.verify_hashes,
            tiny_smoke=not args.no_tiny_smoke,
            real_smoke=args.smoke,
        )
    print_line(json.dumps(report_json(findings), indent=2) if args.json else report_text(findings))
    return exit_code(findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hymotion doctor", description="Check that this machine can generate.")
    add_doctor_arguments(parser)
    return doctor_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
