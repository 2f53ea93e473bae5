"""benchmarks/backend_env.py: the environment start-up benchmarks run in holds the backend's dependencies and nothing
else, so imports cost what they cost in the add-on's installed backend."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

BACKEND_ENV = Path(__file__).resolve().parents[2] / "benchmarks" / "backend_env.py"


@pytest.fixture(scope="module")
def backend_env():
    spec = importlib.util.spec_from_file_location("backend_env", BACKEND_ENV)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_environment_imports_the_backend_but_not_what_only_this_python_has(backend_env, tmp_path):
    names, _ = backend_env.build(tmp_path / "env")
    assert any(name.startswith("torch ") for name in names) and any(name.startswith("diffusers ") for name in names)
    python = tmp_path / "env" / "bin" / "python"
    probe = ("import importlib.util, hymotion.pipeline.memory; "
             "print(importlib.util.find_spec('pytest') is None, importlib.util.find_spec('safetensors') is not None)")
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"], "pytest (a test tool, not a backend dependency) must be absent"


def test_a_backend_requirement_that_is_not_installed_is_named(backend_env, monkeypatch):
    from packaging.requirements import Requirement

    monkeypatch.setattr(backend_env, "backend_requirements", lambda: [Requirement("no-such-distribution-xyz>=1")])
    with pytest.raises(SystemExit, match="no-such-distribution-xyz"):
        backend_env.closure(backend_env.backend_requirements())
