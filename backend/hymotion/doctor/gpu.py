"""CUDA as torch sees it, the GPUs and driver as NVML sees them, and the memory plan `auto` would pick here."""

from __future__ import annotations

import os
from dataclasses import asdict

from .. import gpu_info
from . import environment
from .environment import TORCH_CUDA_INSTALL
from .findings import GIB, OK, WARN, Finding, State, gib, version_tuple, wanted_variant

OTHER_PROCESSES_WARN_BYTES = GIB // 2


def check_gpu(state: State) -> list[Finding]:
    """CUDA as torch sees it, and the GPU, driver and VRAM as NVML sees them."""
    torch = state.torch
    nvml = gpu_info.read_nvml()
    state.nvml = nvml if isinstance(nvml, gpu_info.NvmlReport) else None
    nvml_gpus = state.nvml.gpus if state.nvml else []
    cuda_build = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
    cuda_available = bool(torch and torch.cuda.is_available())
    state.cuda_usable = cuda_available
    state.device = "cuda" if cuda_available else "cpu"
    findings = []

    if torch is not None and cuda_available:
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
        if torch is not None and cuda_available:
            free, total = torch.cuda.mem_get_info()
            findings.append(Finding(
                "gpu", WARN, f"{nvml}; torch reports {gib(free)} free of {gib(total)}",
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
            f"{process.name} (pid {process.pid}, {gib(process.used_bytes) if process.used_bytes else 'size hidden'})"
            for process in sorted(others, key=lambda process: -(process.used_bytes or 0))
        )
        cuda_driver = nvml.cuda_driver_version or "?"
        detail = (f"GPU {gpu.index}: {gpu.name}, driver {nvml.driver_version} (CUDA {cuda_driver}), "
                  f"{gib(gpu.free_bytes)} free of {gib(gpu.total_bytes)}")
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
    if cuda_build and driver_cuda and version_tuple(driver_cuda) < version_tuple(cuda_build)[:1] + (0,):
        return (f"The NVIDIA driver is too old for this torch (needs CUDA {cuda_build.split('.')[0]}.x, driver offers "
                f"{driver_cuda}): update the driver, or install a torch built for CUDA {driver_cuda.split('.')[0]}.")
    if cuda_build and driver_cuda and version_tuple(driver_cuda) < version_tuple(cuda_build):
        return (f"The driver (CUDA {driver_cuda}) is older than torch's CUDA {cuda_build}: update the NVIDIA driver.")
    return ("Check that CUDA_VISIBLE_DEVICES does not hide the GPU and that the NVIDIA driver is loaded "
            "(nvidia-smi should list the GPU); reboot after a driver update.")


def check_plan(state: State) -> Finding:
    """The memory plan ``auto`` would pick here and the VRAM it expects; also what closing other programs would buy."""
    variant = wanted_variant(state)
    if not state.cuda_usable:
        state.plan, state.device = "cpu", "cpu"
        return Finding("plan", OK, "auto picks plan cpu (no usable CUDA GPU): expect minutes per clip",
                       data={"plan": "cpu", "device": "cpu", "variant": variant, "expected_vram_bytes": 0})
    memory = environment.import_memory(state)
    if memory is None:
        return Finding("plan", WARN,
                       "cannot tell which memory plan auto picks: hymotion.pipeline.memory is unavailable",
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
    detail = (f"auto picks plan {plan} for {variant} on {report['device']}: expects {gib(expected)} of VRAM, "
              f"{gib(report['free_vram'])} free of {gib(report['total_vram'])}")
    held = sum(_vram_held_by_others(state))
    if held:
        better = memory.choose_plan("auto", variant, memory=(report["free_vram"] + held, report["total_vram"]))
        if better != plan:
            data["plan_without_other_programs"] = better
            return Finding("plan", WARN, detail,
                           f"Other programs hold {gib(held)} of VRAM; with them closed auto would pick the faster "
                           f"plan {better}.", data)
    if plan == "cpu":
        return Finding("plan", WARN, detail, "Too little free VRAM for any GPU plan: close other GPU programs.", data)
    return Finding("plan", OK, detail, data=data)


def _vram_held_by_others(state: State) -> list[int]:
    """VRAM held by other processes on the GPU torch uses (device 0 as NVML numbers it)."""
    if not state.nvml or not state.nvml.gpus:
        return []
    own_pid = os.getpid()
    return [process.used_bytes or 0 for process in state.nvml.gpus[0].processes if process.pid != own_pid]
