"""Build a virtual environment that holds exactly the backend's dependencies, linked from this Python's site-packages.

Start-up is mostly imports, and libraries import what they find: transformers imports scikit-learn (and through it
scipy.stats) when it is installed, diffusers probes dozens of optional packages. A machine with a big scientific
Python (like the lent GPU machine) therefore starts slower than the backend the add-on installs, which holds only the
backend's requirements. Benchmarks of the start run in this environment to measure what a user's backend does:

    python benchmarks/backend_env.py /tmp/backend-env
    /tmp/backend-env/bin/python benchmarks/start_up_profile.py --work-dir ...

Nothing is copied or downloaded: every distribution in the closure of ``backend/pyproject.toml``'s dependencies is
symlinked (its top-level packages and its metadata), and the backend's own folder is put on the path.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path
from typing import cast

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


def backend_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "backend" / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def closure(requirements: list[Requirement]) -> tuple[dict[str, metadata.Distribution], set[str]]:
    """Every installed distribution the requirements pull in, following ``Requires-Dist`` whose markers hold here
    (no extras), and the names of those that are not installed. The backend's own requirements must be; a
    dependency of a dependency may be missing where the environment was installed without them."""
    environment = cast(dict[str, str], {**default_environment(), "extra": ""})
    found: dict[str, metadata.Distribution] = {}
    missing: set[str] = set()
    pending = list(requirements)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found or name in missing or (requirement.marker and not requirement.marker.evaluate(environment)):
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            if requirement in requirements:
                raise SystemExit(f"{requirement.name} (a backend requirement) is not installed in {sys.prefix}; "
                                 "install the backend into this Python first (pip install ./backend)") from None
            missing.add(name)
            continue
        found[name] = distribution
        pending.extend(Requirement(text) for text in distribution.requires or ())
    return found, missing


def top_level_entries(distribution: metadata.Distribution) -> set[Path]:
    """The site-packages entries a distribution installed: its packages, modules and metadata folder."""
    base = Path(str(distribution.locate_file("")))
    entries = set()
    for file in distribution.files or ():
        parts = Path(file).parts
        if parts and parts[0] not in ("..", "__pycache__"):
            entries.add(base / parts[0])
    return {entry for entry in entries if entry.exists()}


def build(target: Path) -> tuple[list[str], set[str]]:
    venv.EnvBuilder(clear=True, with_pip=False, symlinks=True).create(target)
    site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(target), "platbase": str(target)}))
    distributions, missing = closure(backend_requirements())
    for distribution in distributions.values():
        for entry in top_level_entries(distribution):
            link = site_packages / entry.name
            if not link.exists():
                link.symlink_to(entry)
    (site_packages / "hymotion-backend.pth").write_text(f"{REPO / 'backend'}\n")
    return sorted(f"{d.metadata['Name']} {d.version}" for d in distributions.values()), missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", type=Path, help="the environment's folder (replaced)")
    arguments = parser.parse_args()
    names, missing = build(arguments.target)
    print(f"{arguments.target}: {len(names)} distributions: {', '.join(names)}")
    if missing:
        print(f"not installed here, left out: {', '.join(sorted(missing))}")


if __name__ == "__main__":
    main()
