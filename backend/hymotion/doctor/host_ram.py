"""Host RAM: the weights are read from their memory-mapped files, so free RAM decides whether they stay cached."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

from . import environment
from .findings import GIB, OK, WARN, Finding, State, gib
from .hub import DOWNLOAD_SIZE_ESTIMATES

HOST_RAM_OVERHEAD = 2 * GIB


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
    """Bytes of RAM that keep every weight file in the page cache, plus the process's own memory: with less, the
    system re-reads Qwen3's files from disk for each new prompt (slower, never failing)."""
    if memory is None:
        qwen, lite = DOWNLOAD_SIZE_ESTIMATES["Qwen3-8B"], DOWNLOAD_SIZE_ESTIMATES["HY-Motion-1.0-Lite"]
        return qwen + 2 * lite + HOST_RAM_OVERHEAD
    dit = memory.DIT_PARAMS.get(variant, memory.DIT_PARAMS["lite"]) * 4
    return memory.QWEN_BASE_PARAMS * 2 + memory.CLIP_TEXT_PARAMS * 4 + dit + HOST_RAM_OVERHEAD


def check_host_ram(state: State) -> Finding:
    measured = host_memory()
    if measured is None:
        return Finding("ram", WARN, "host RAM size unknown on this platform", data={})
    total, available = measured
    needed = _host_ram_needed(environment.import_memory(state), state.variant or "lite")
    data = {"total_bytes": total, "available_bytes": available, "needed_bytes": needed}
    detail = f"{gib(available)} available of {gib(total)}"
    if available < needed:
        return Finding("ram", WARN, detail + f"; the text encoder and model need about {gib(needed)} on the host",
                       "Generation still works: the weights are read from their files, and with less free RAM "
                       "than they take, each new prompt re-reads them from disk (seconds on an SSD). Close programs "
                       "to keep them cached.", data)
    return Finding("ram", OK, detail, data=data)
