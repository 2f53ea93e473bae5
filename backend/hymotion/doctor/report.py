"""The report: text for people (what the add-on's Copy report copies) and the ``--json`` document for programs."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from .. import __version__
from .findings import FAIL, OK, WARN, Finding

SCHEMA = "hymotion-doctor/1"


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(finding.status == FAIL for finding in findings) else 0


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
