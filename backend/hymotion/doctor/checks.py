"""All checks, in the order a person would fix them."""

from __future__ import annotations

from . import hub
from .environment import check_packages, check_python, check_torch
from .findings import Finding, State
from .gpu import check_gpu, check_plan
from .host_ram import check_host_ram
from .smoke import check_real_smoke, check_tiny_smoke
from .weight_files import check_disk, check_weights


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
        online = not hub.offline()
    state = State(model_dir=model_dir, variant=variant, online=online)
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
