"""What NVML says about the NVIDIA driver and GPUs: cheap (no CUDA context, no torch), for `hello` and the doctor.

NVML comes from the optional ``nvidia-ml-py`` package (import name ``pynvml``); every call is guarded, so a machine
without it, without a driver or with odd devices gets an answer saying so instead of an exception.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


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


class NvmlUnavailable(Exception):
    """NVML cannot answer; ``no_driver`` when nvidia-ml-py is installed but no NVIDIA driver is loaded."""

    def __init__(self, reason: str, no_driver: bool) -> None:
        super().__init__(reason)
        self.no_driver = no_driver


@contextlib.contextmanager
def nvml_session() -> Iterator[ModuleType]:
    """pynvml, initialised for the block and shut down after it; raises NvmlUnavailable when it cannot start."""
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed", no_driver=False) from None
    try:
        pynvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        raise NvmlUnavailable(f"NVML did not start ({error}); no NVIDIA driver is loaded", no_driver=True) from None
    try:
        yield pynvml
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def read_nvml() -> NvmlReport | str:
    """The driver and every GPU with the processes holding its memory, or why NVML cannot say."""
    try:
        with nvml_session() as pynvml:
            return _nvml_report(pynvml)
    except NvmlUnavailable as unavailable:
        return str(unavailable)
    except Exception as error:  # noqa: BLE001 - any query failure becomes the reason, never a crash
        return f"NVML query failed ({error})"


def _nvml_report(pynvml: ModuleType) -> NvmlReport:
    driver = _text(pynvml.nvmlSystemGetDriverVersion())
    try:
        cuda_number = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        cuda_driver = f"{cuda_number // 1000}.{cuda_number % 1000 // 10}"
    except Exception:  # noqa: BLE001 - older drivers lack the call
        cuda_driver = None
    gpus = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        processes: dict[int, GpuProcess] = {}
        for lister in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                running = lister(handle)
            except Exception:  # noqa: BLE001 - not supported on this GPU or driver
                continue
            for process in running:
                used = getattr(process, "usedGpuMemory", None)
                used = int(used) if isinstance(used, int) and used < 2**63 else None
                processes[process.pid] = GpuProcess(process.pid, _process_name(pynvml, process.pid), used)
        gpus.append(GpuInfo(index, _text(pynvml.nvmlDeviceGetName(handle)), int(memory.total), int(memory.free),
                            list(processes.values())))
    return NvmlReport(driver, cuda_driver, gpus)


def device_report(device: str | None) -> tuple[str | None, int | None, int | None]:
    """Name, free and total bytes of the GPU that ``device`` (default cuda:0) will be; None where unknown.

    ``cuda:N`` counts the devices CUDA_VISIBLE_DEVICES leaves visible, as torch does; without a driver the answer is
    ("cpu", None, None), since torch will then run on the CPU.
    """
    index = int(device.split(":")[1]) if device and device.startswith("cuda:") else 0
    visible = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    try:
        with nvml_session() as pynvml:
            handle = (
                pynvml.nvmlDeviceGetHandleByIndex(int(physical))
                if physical.isdigit()
                else pynvml.nvmlDeviceGetHandleByUUID(physical)
            )
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            return _text(pynvml.nvmlDeviceGetName(handle)), int(memory.free), int(memory.total)
    except NvmlUnavailable as unavailable:
        return ("cpu" if unavailable.no_driver else None), None, None
    except Exception:  # noqa: BLE001 - hidden or odd devices: report them as unknown rather than fail the hello
        return None, None, None


def _process_name(pynvml: ModuleType, pid: int) -> str:
    try:
        return os.path.basename(_text(pynvml.nvmlSystemGetProcessName(pid)))
    except Exception:  # noqa: BLE001 - NVML hides other users' processes on some systems
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return "unknown"


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
