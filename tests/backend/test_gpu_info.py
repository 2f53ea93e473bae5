"""NVML reading shared by `hello` and the doctor, against a stand-in pynvml: CUDA_VISIBLE_DEVICES maps cuda:N to the
physical GPU, no driver means the cpu, and a missing library or a failing query is reported, never raised."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from hymotion import gpu_info

GIB = 1024**3


class FakeNvml:
    """Two GPUs by index and UUID; counts init/shutdown so a test can see every session closed."""

    def __init__(self, driver_loaded: bool = True) -> None:
        self.driver_loaded = driver_loaded
        self.open_sessions = 0
        self.gpus = {"0": ("GPU zero", 8 * GIB, 6 * GIB), "1": ("GPU one", 24 * GIB, 20 * GIB)}
        self.uuids = {"GPU-aaaa": "1"}

    def nvmlInit(self) -> None:
        if not self.driver_loaded:
            raise RuntimeError("Driver Not Loaded")
        self.open_sessions += 1

    def nvmlShutdown(self) -> None:
        self.open_sessions -= 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if str(index) not in self.gpus:
            raise RuntimeError("Invalid Argument")
        return str(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return self.uuids[uuid]

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return self.gpus[handle][0].encode()

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        _, total, free = self.gpus[handle]
        return SimpleNamespace(total=total, free=free)

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> str:
        return "560.35"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 12060

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=4242, usedGpuMemory=GIB)] if handle == "0" else []

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        raise RuntimeError("Not Supported")

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:
        return b"/usr/bin/chrome"


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


def test_device_report_follows_cuda_visible_devices(fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu_info.device_report(None) == ("GPU zero", 6 * GIB, 8 * GIB)
    assert gpu_info.device_report("cuda:1") == ("GPU one", 20 * GIB, 24 * GIB)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert gpu_info.device_report("cuda:0")[0] == "GPU one"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa")
    assert gpu_info.device_report("cuda:0")[0] == "GPU one"
    assert fake_nvml.open_sessions == 0


def test_device_report_without_driver_library_or_device(fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu_info.device_report("cuda:7") == (None, None, None)
    assert fake_nvml.open_sessions == 0
    fake_nvml.driver_loaded = False
    assert gpu_info.device_report("cuda:0") == ("cpu", None, None)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    assert gpu_info.device_report("cuda:0") == (None, None, None)


def test_read_nvml_lists_gpus_and_the_processes_holding_memory(fake_nvml: FakeNvml) -> None:
    report = gpu_info.read_nvml()
    assert isinstance(report, gpu_info.NvmlReport)
    assert (report.driver_version, report.cuda_driver_version) == ("560.35", "12.6")
    assert [gpu.name for gpu in report.gpus] == ["GPU zero", "GPU one"]
    assert report.gpus[0].processes == [gpu_info.GpuProcess(4242, "chrome", GIB)]
    assert report.gpus[1].processes == [] and fake_nvml.open_sessions == 0


def test_read_nvml_says_why_it_cannot_answer(fake_nvml: FakeNvml, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvml.driver_loaded = False
    assert gpu_info.read_nvml() == "NVML did not start (Driver Not Loaded); no NVIDIA driver is loaded"
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert gpu_info.read_nvml() == "nvidia-ml-py is not installed"
