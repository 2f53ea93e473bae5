"""Build the backend's pure-Python wheel into wheels/, where blender_manifest.toml lists it.

The extension imports the torch-free modules of `hymotion` (skeleton, errors, jobs) from this wheel; Blender installs
it without its dependencies, so torch never reaches Blender's Python. The build runs on a copy of backend/ so that
no build/ or egg-info folders are left in the source tree, and without build isolation so that it works offline
(the Python that runs pip needs setuptools >= 70.1, or an older setuptools with the `wheel` package).

    python scripts/build_wheels.py [--out wheels] [--python PATH]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKEND_DIR = REPO_ROOT / "backend"
DEFAULT_OUT_DIR = REPO_ROOT / "wheels"
_VERSION_LINE = re.compile(r'^__version__\s*=\s*"(?P<version>[^"]+)"', re.MULTILINE)


def backend_version(backend_dir: Path = BACKEND_DIR) -> str:
    """The version the wheel will carry, read from the source so this script needs no installed backend."""
    init_text = (backend_dir / "hymotion" / "__init__.py").read_text(encoding="utf-8")
    match = _VERSION_LINE.search(init_text)
    if match is None:
        raise SystemExit(f"No __version__ = \"...\" line in {backend_dir / 'hymotion' / '__init__.py'}.")
    return match["version"]


def wheel_filename(version: str) -> str:
    return f"hymotion-{version}-py3-none-any.whl"


def can_build_wheels(python: str) -> bool:
    """Whether `python` can build a wheel offline: it needs setuptools' own bdist_wheel or the `wheel` package."""
    probe = "import importlib.util as u, sys; sys.exit(not (u.find_spec('setuptools') and (u.find_spec('wheel') or "
    probe += "u.find_spec('setuptools.command.bdist_wheel'))))"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def build_backend_wheel(
    out_dir: Path = DEFAULT_OUT_DIR, backend_dir: Path = BACKEND_DIR, python: str = sys.executable
) -> Path:
    """Build hymotion-<version>-py3-none-any.whl into out_dir (replacing an older build) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel_filename(backend_version(backend_dir))
    ignore = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc")
    with tempfile.TemporaryDirectory(prefix="hymotion-wheel-") as scratch:
        source_copy = Path(scratch) / "backend"
        shutil.copytree(backend_dir, source_copy, ignore=ignore)
        built_dir = Path(scratch) / "wheelhouse"
        command = [
            python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
            "--quiet", "--wheel-dir", str(built_dir), str(source_copy),
        ]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise SystemExit(
                f"pip wheel failed (exit {completed.returncode}):\n{completed.stdout}{completed.stderr}\n"
                "Run it with a Python that has pip and setuptools >= 70.1 (or setuptools and `wheel`), e.g. --python."
            )
        built = built_dir / target.name
        if not built.is_file():
            found = ", ".join(path.name for path in built_dir.glob("*.whl")) or "nothing"
            raise SystemExit(f"Expected {target.name} but pip built {found}.")
        shutil.copy2(built, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help="folder for the wheel (default: wheels/)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pip (default: this one)")
    args = parser.parse_args(argv)
    if not can_build_wheels(args.python):
        raise SystemExit(f"{args.python} cannot build wheels offline: it needs setuptools >= 70.1, or `wheel`.")
    print(build_backend_wheel(args.out, python=args.python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
