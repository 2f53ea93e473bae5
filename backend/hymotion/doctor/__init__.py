"""`hymotion doctor`: can this machine generate, and if not, what exactly to do about it.

Local text-to-motion fails in the same few ways: a driver too old for the installed torch, a CPU-only torch on a
machine with a GPU, VRAM held by other programs, half-downloaded or Git-LFS-pointer weights, prompts the model cannot
follow. Each check here turns one of those into a finding (OK / WARN / FAIL) with one line of advice. FAIL means
generation cannot work until it is fixed; the exit code is 1 exactly when a FAIL is present.

One job per module: :mod:`.environment` (Python, packages, torch), :mod:`.gpu` (CUDA, the GPUs through
:mod:`hymotion.gpu_info`, the memory plan), :mod:`.host_ram`, :mod:`.hub` (the Hugging Face cache and listing),
:mod:`.weight_files` (weight integrity, disk space), :mod:`.smoke` (tiny and real generation), :mod:`.report` (text
and JSON), :mod:`.cli`; :mod:`.checks` runs them in order and :mod:`.findings` holds what they share.

Every heavy or optional import (torch, NVML, huggingface_hub, the memory plans, the pipeline) is guarded: a doctor
that crashes on the problem it should diagnose is useless. ``--json`` prints a self-contained report (its schema is
documented in docs/troubleshooting.md) that the Blender add-on shows and copies.
"""

from ..gpu_info import GpuInfo, GpuProcess, NvmlReport
from .checks import run_checks
from .cli import add_doctor_arguments, doctor_main, main
from .environment import TORCH_CPU_INSTALL, TORCH_CUDA_INSTALL
from .findings import FAIL, GIB, OK, WARN, Finding
from .host_ram import host_memory
from .report import SCHEMA, exit_code, report_json, report_text
from .smoke import SMOKE_SECONDS

__all__ = [
    "FAIL", "GIB", "OK", "SCHEMA", "SMOKE_SECONDS", "TORCH_CPU_INSTALL", "TORCH_CUDA_INSTALL", "WARN",
    "Finding", "GpuInfo", "GpuProcess", "NvmlReport",
    "add_doctor_arguments", "doctor_main", "exit_code", "host_memory", "main", "report_json",
    "report_text", "run_checks",
]
