"""`hymotion doctor` on the command line: its arguments, the text or ``--json`` report, the exit code."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator

from ..shared.models import VARIANTS, variant_help
from .checks import run_checks
from .report import exit_code, report_json, report_text
from .smoke import SMOKE_PROMPT, SMOKE_SECONDS


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", default=None,
                        help="folder holding the weights (default: the Hugging Face cache, as hymotion download)")
    parser.add_argument("--variant", choices=VARIANTS, default=None,
                        help="the model that must be present: " + variant_help("default: either"))
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
