"""What every check returns (a Finding with OK / WARN / FAIL) and what earlier checks hand to later ones (State)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..gpu_info import NvmlReport

OK, WARN, FAIL = "OK", "WARN", "FAIL"
GIB = 1024**3


@dataclass
class Finding:
    """One line of the report. ``name`` is a stable identifier; ``data`` holds the numbers behind ``detail``."""

    name: str
    status: str
    detail: str
    advice: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class State:
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


def wanted_variant(state: State) -> str:
    """The variant the user asked for, else the first complete one, else lite (the smaller download)."""
    return state.variant or (state.complete_variants[0] if state.complete_variants else "lite")


def gib(value: int | float | None) -> str:
    return "unknown" if value is None else f"{value / GIB:.1f} GiB"


def version_tuple(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("+")[0].split("."):
        digits = "".join(char for char in part if char.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)
