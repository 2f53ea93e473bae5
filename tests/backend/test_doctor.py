"""`hymotion doctor` on this CPU machine: no GPU means plan cpu; broken weights are found with the command that fixes
them; the JSON report keeps its schema; the exit code says whether generation can work. No network: the hub is never
asked (offline, or a stubbed listing)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from hymotion import doctor, gpu_info, weights
from hymotion.doctor import FAIL, OK, WARN, Finding, GpuInfo, GpuProcess, NvmlReport, environment, hub
from hymotion.shared.errors import WEIGHTS_MISSING, HyMotionError

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 1912345678\n"
)


def _write_encoder(folder: Path, shards: int) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "test"}')
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    if shards == 1:
        save_file({"weight": torch.ones(8, 4)}, folder / "model.safetensors")
        return
    weight_map = {}
    for index in range(1, shards + 1):
        name = f"model-{index:05d}-of-{shards:05d}.safetensors"
        save_file({f"layer{index}.weight": torch.ones(16, 16) * index}, folder / name)
        weight_map[f"layer{index}.weight"] = name
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A complete Lite download at toy sizes, in the layout ``hymotion download --model-dir`` writes."""
    root = tmp_path / "models"
    lite = root / "HY-Motion-1.0-Lite"
    lite.mkdir(parents=True)
    (lite / "config.yml").write_text("network_module: hymotion.network.HunyuanMotionMMDiT\ntrain_frames: 360\n")
    torch.save({"model_state_dict": {"motion_transformer.w": torch.zeros(64, 64)}}, lite / "latest.ckpt")
    _write_encoder(root / "Qwen3-8B", shards=2)
    _write_encoder(root / "clip-vit-large-patch14", shards=1)
    return root


@pytest.fixture(autouse=True)
def _no_gpu_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_info, "read_nvml", lambda: "nvidia-ml-py is not installed")
    monkeypatch.setattr(hub, "listing", lambda repo_id: pytest.fail(f"asked the hub for {repo_id}"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _checks(model_dir: Path, **options) -> dict[str, Finding]:
    options.setdefault("tiny_smoke", False)
    return {finding.name: finding for finding in doctor.run_checks(model_dir=str(model_dir), **options)}


def _args(model_dir: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    doctor.add_doctor_arguments(parser)
    return parser.parse_args(["--model-dir", str(model_dir), "--no-tiny-smoke", *extra])


def _fix_command(model_dir: Path) -> str:
    return f"hymotion download --variant lite --model-dir {model_dir}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this test pins the CPU machine's report")
def test_cpu_machine_reports_no_gpu_and_recommends_the_cpu_plan(model_dir: Path) -> None:
    findings = _checks(model_dir)
    assert findings["gpu"].status == WARN and "No NVIDIA GPU" in findings["gpu"].detail
    assert "plan cpu" in findings["gpu"].advice
    assert findings["cuda"].status == OK and "cpu plan" in findings["cuda"].detail
    assert findings["plan"].data["plan"] == "cpu" and findings["plan"].data["device"] == "cpu"
    report = doctor.report_json(list(findings.values()))
    assert report["recommended_plan"] == "cpu" and report["recommended_device"] == "cpu"


def test_complete_weights_pass_and_generation_can_work(model_dir: Path) -> None:
    findings = _checks(model_dir)
    for name in ("weights:HY-Motion-1.0-Lite", "weights:Qwen3-8B", "weights:clip-vit-large-patch14"):
        assert findings[name].status == OK, findings[name]
    assert findings["weights:HY-Motion-1.0"].status == OK
    assert "not downloaded" in findings["weights:HY-Motion-1.0"].detail
    assert "--variant standard" in findings["weights:HY-Motion-1.0"].advice
    assert findings["hub"].data == {"online": False}
    assert doctor.exit_code(list(findings.values())) == 0
    assert doctor.doctor_main(_args(model_dir), print_line=lambda text: None) == 0


def test_missing_shard_fails_with_the_download_command(model_dir: Path) -> None:
    (model_dir / "Qwen3-8B" / "model-00002-of-00002.safetensors").unlink()
    finding = _checks(model_dir)["weights:Qwen3-8B"]
    assert finding.status == FAIL
    assert "model-00002-of-00002.safetensors: missing" in finding.detail
    assert finding.advice.endswith(_fix_command(model_dir))
    assert doctor.doctor_main(_args(model_dir), print_line=lambda text: None) == 1


def test_nothing_downloaded_fails_and_says_download(tmp_path: Path) -> None:
    findings = _checks(tmp_path / "empty")
    lite = findings["weights:HY-Motion-1.0-Lite"]
    assert lite.status == FAIL and "not downloaded" in lite.detail
    assert lite.advice == f"Download it: hymotion download --variant lite --model-dir {tmp_path / 'empty'}"
    assert findings["weights:Qwen3-8B"].status == FAIL


def test_truncated_safetensors_shard_is_detected_offline(model_dir: Path) -> None:
    shard = model_dir / "Qwen3-8B" / "model-00001-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    finding = _checks(model_dir)["weights:Qwen3-8B"]
    assert finding.status == FAIL
    assert "truncated" in finding.detail
    assert str(shard) in [problem["path"] for problem in finding.data["problems"]]
    assert "Delete the broken file" in finding.advice and finding.advice.endswith(_fix_command(model_dir))


def test_truncated_checkpoint_zip_is_detected_offline(model_dir: Path) -> None:
    checkpoint = model_dir / "HY-Motion-1.0-Lite" / "latest.ckpt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    finding = _checks(model_dir)["weights:HY-Motion-1.0-Lite"]
    assert finding.status == FAIL and "truncated or corrupt" in finding.detail
    assert finding.advice.endswith(_fix_command(model_dir))


def test_git_lfs_pointer_instead_of_the_checkpoint_is_detected(model_dir: Path) -> None:
    (model_dir / "HY-Motion-1.0-Lite" / "latest.ckpt").write_text(LFS_POINTER)
    finding = _checks(model_dir)["weights:HY-Motion-1.0-Lite"]
    assert finding.status == FAIL
    assert "Git LFS pointer" in finding.detail and "1.8 GiB" in finding.detail
    assert finding.advice.endswith(_fix_command(model_dir))


def test_size_differing_from_the_hub_listing_is_truncation(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = model_dir / "clip-vit-large-patch14"
    published: dict[str, dict[str, Any]] = {name.name: {"size": name.stat().st_size, "sha256": None}
                                            for name in clip.iterdir()}
    published["model.safetensors"]["size"] += 4096
    listings = {
        "openai/clip-vit-large-patch14": published,
        "Qwen/Qwen3-8B": {path.name: {"size": path.stat().st_size, "sha256": None}
                          for path in (model_dir / "Qwen3-8B").iterdir()},
        "tencent/HY-Motion-1.0": {},
    }
    monkeypatch.setattr(hub, "listing", lambda repo_id: listings[repo_id])
    findings = _checks(model_dir, online=True)
    assert findings["hub"].data == {"online": True}
    assert findings["weights:Qwen3-8B"].status == OK
    clip_finding = findings["weights:clip-vit-large-patch14"]
    assert clip_finding.status == FAIL
    assert "truncated" in clip_finding.detail and "the hub lists" in clip_finding.detail


def test_hash_check_compares_with_the_hub_sha256(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights_file = model_dir / "clip-vit-large-patch14" / "model.safetensors"
    listing = {"model.safetensors": {"size": weights_file.stat().st_size, "sha256": "0" * 64}}
    monkeypatch.setattr(hub, "listing", lambda repo_id: listing if "clip" in repo_id else {})
    finding = _checks(model_dir, online=True, verify_hashes=True)["weights:clip-vit-large-patch14"]
    assert finding.status == FAIL and "checksum differs" in finding.detail


def test_unreachable_hub_falls_back_to_offline_checks(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "listing", lambda repo_id: "ConnectError: no route")
    findings = _checks(model_dir, online=True)
    assert "hub not reachable" in findings["hub"].detail
    assert findings["weights:HY-Motion-1.0-Lite"].status == OK


def test_interrupted_download_is_reported_with_the_command_that_resumes_it(model_dir: Path) -> None:
    partial = model_dir / ".cache" / "huggingface" / "download" / "HY-Motion-1.0-Lite" / "latest.ckpt.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 10)
    (model_dir / "HY-Motion-1.0-Lite" / "latest.ckpt").unlink()
    finding = _checks(model_dir)["weights:HY-Motion-1.0-Lite"]
    assert finding.status == FAIL and "interrupted download" in finding.detail
    assert finding.advice == f"Complete the download: {_fix_command(model_dir)}"


def test_unreadable_file_is_reported(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = model_dir / "clip-vit-large-patch14" / "config.json"
    original_open = Path.open

    def open_refusing_config(self: Path, *args, **kwargs):
        if self == config:
            raise PermissionError(13, "Permission denied")
        return original_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_refusing_config)
    finding = _checks(model_dir)["weights:clip-vit-large-patch14"]
    assert finding.status == FAIL and "unreadable (Permission denied)" in finding.detail


def test_broken_optional_variant_only_warns(model_dir: Path) -> None:
    standard = model_dir / "HY-Motion-1.0"
    shutil.copytree(model_dir / "HY-Motion-1.0-Lite", standard)
    (standard / "latest.ckpt").write_text(LFS_POINTER)
    findings = _checks(model_dir)
    assert findings["weights:HY-Motion-1.0"].status == WARN
    assert "--variant standard" in findings["weights:HY-Motion-1.0"].advice
    assert doctor.exit_code(list(findings.values())) == 0
    assert _checks(model_dir, variant="standard")["weights:HY-Motion-1.0"].status == FAIL


def test_missing_torch_fails_with_both_install_commands(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "import_torch", lambda: "ModuleNotFoundError: No module named 'torch'")
    findings = _checks(model_dir, tiny_smoke=True, real_smoke=True)
    torch_finding = findings["torch"]
    assert torch_finding.status == FAIL
    assert doctor.TORCH_CUDA_INSTALL in torch_finding.advice and doctor.TORCH_CPU_INSTALL in torch_finding.advice
    assert findings["smoke:tiny"].status == WARN
    assert doctor.exit_code(list(findings.values())) == 1


def test_cpu_only_torch_next_to_an_nvidia_gpu_is_named(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    browser = GpuProcess(pid=4242, name="chrome", used_bytes=3 * doctor.GIB)
    gpu = GpuInfo(index=0, name="NVIDIA GeForce RTX 4070", total_bytes=12 * doctor.GIB, free_bytes=8 * doctor.GIB,
                  processes=[browser])
    monkeypatch.setattr(gpu_info, "read_nvml", lambda: NvmlReport("560.35", "12.6", [gpu]))
    fake_torch = SimpleNamespace(__version__="2.13.0+cpu", version=SimpleNamespace(cuda=None),
                                 cuda=SimpleNamespace(is_available=lambda: False))
    monkeypatch.setattr(environment, "import_torch", lambda: fake_torch)
    findings = _checks(model_dir)
    assert findings["cuda"].status == WARN and "CPU-only build" in findings["cuda"].detail
    assert doctor.TORCH_CUDA_INSTALL in findings["cuda"].advice
    gpu_finding = findings["gpu:0"]
    assert gpu_finding.status == WARN
    assert "chrome (pid 4242, 3.0 GiB)" in gpu_finding.detail and "driver 560.35" in gpu_finding.detail
    assert gpu_finding.data["held_by_others_bytes"] == 3 * doctor.GIB


def test_driver_too_old_for_the_torch_cuda_build_is_named(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = GpuInfo(index=0, name="NVIDIA GeForce GTX 1080", total_bytes=8 * doctor.GIB, free_bytes=8 * doctor.GIB,
                  processes=[])
    monkeypatch.setattr(gpu_info, "read_nvml", lambda: NvmlReport("470.82", "11.4", [gpu]))
    fake_torch = SimpleNamespace(__version__="2.13.0", version=SimpleNamespace(cuda="12.8"),
                                 cuda=SimpleNamespace(is_available=lambda: False))
    monkeypatch.setattr(environment, "import_torch", lambda: fake_torch)
    findings = _checks(model_dir)
    assert findings["cuda"].status == WARN
    assert "driver is too old" in findings["cuda"].advice
    assert findings["gpu:0"].status == OK and "no other program holds VRAM" in findings["gpu:0"].detail


def test_tiny_smoke_run_generates_on_the_chosen_device(model_dir: Path) -> None:
    finding = _checks(model_dir, tiny_smoke=True)["smoke:tiny"]
    assert finding.status == OK, finding
    assert finding.data["frames"] == round(doctor.SMOKE_SECONDS * 30)
    on_gpu = torch.cuda.is_available()
    assert finding.data["device"].startswith("cuda" if on_gpu else "cpu")
    assert (finding.data["peak_vram_bytes"] is not None) == on_gpu


def test_failing_smoke_run_is_a_failure_with_the_pipeline_hint(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):
        raise HyMotionError(WEIGHTS_MISSING, "HY-Motion lite is not downloaded.", "Run: hymotion download")

    monkeypatch.setattr(environment, "import_pipeline", lambda state: SimpleNamespace(load_pipeline=refuse))
    findings = _checks(model_dir, tiny_smoke=True, real_smoke=True)
    for name in ("smoke:tiny", "smoke:real"):
        assert findings[name].status == FAIL
        assert "not downloaded" in findings[name].detail and findings[name].advice == "Run: hymotion download"


def test_real_smoke_without_weights_fails_with_the_download_command(tmp_path: Path) -> None:
    finding = _checks(tmp_path / "nothing", real_smoke=True)["smoke:real"]
    assert finding.status == FAIL
    assert finding.advice == f"Run: hymotion download --variant lite --model-dir {tmp_path / 'nothing'}"


def test_json_report_schema(model_dir: Path) -> None:
    printed: list[str] = []
    (model_dir / "HY-Motion-1.0-Lite" / "latest.ckpt").write_text(LFS_POINTER)
    code = doctor.doctor_main(_args(model_dir, "--json"), print_line=printed.append)
    report = json.loads(printed[0])
    assert set(report) == {"schema", "hymotion_version", "created", "ok", "exit_code", "counts", "recommended_plan",
                           "recommended_device", "findings", "report_text"}
    assert report["schema"] == doctor.SCHEMA
    assert report["ok"] is False and report["exit_code"] == code == 1
    assert set(report["counts"]) == {OK, WARN, FAIL} and report["counts"][FAIL] >= 1
    assert sum(report["counts"].values()) == len(report["findings"])
    for finding in report["findings"]:
        assert set(finding) == {"name", "status", "detail", "advice", "data"}
        assert finding["status"] in (OK, WARN, FAIL)
        assert isinstance(finding["name"], str) and isinstance(finding["detail"], str)
        assert isinstance(finding["advice"], str) and isinstance(finding["data"], dict)
    names = [finding["name"] for finding in report["findings"]]
    assert {"python", "packages", "torch", "cuda", "ram", "disk", "hub", "plan"} <= set(names)
    lite = report["findings"][names.index("weights:HY-Motion-1.0-Lite")]
    assert lite["data"]["fix_command"] == _fix_command(model_dir)
    assert "[FAIL] weights:HY-Motion-1.0-Lite" in report["report_text"]


def test_report_text_lists_every_finding_with_advice_and_verdict() -> None:
    findings = [Finding("torch", OK, "torch 2.13.0"), Finding("weights:x", FAIL, "missing", "Run: hymotion download")]
    text = doctor.report_text(findings)
    assert "[ OK ] torch" in text and "[FAIL] weights:x" in text and "-> Run: hymotion download" in text
    assert text.splitlines()[-1].startswith("Generation cannot work yet")
    assert doctor.report_text(findings[:1]).splitlines()[-1] == "Generation can work (0 warnings)."


def test_host_memory_reads_total_and_available() -> None:
    memory = doctor.host_memory()
    assert memory is not None, "this Linux machine reports its memory"
    total, available = memory
    assert 0 < available <= total
    if hasattr(os, "sysconf"):
        # /proc/meminfo's MemTotal leaves out memory the kernel reserved at boot (about 1-3% of RAM): 5% covers it
        assert total == pytest.approx(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), rel=0.05)


def test_hugging_face_cache_layout_is_checked_without_model_dir(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshots = {"tencent/HY-Motion-1.0": model_dir, "Qwen/Qwen3-8B": model_dir / "Qwen3-8B",
                 "openai/clip-vit-large-patch14": None}
    cache = tmp_path / "hub"
    partial = cache / "models--Qwen--Qwen3-8B" / "blobs" / "0123abcd.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 10)
    monkeypatch.setattr(weights, "cached_snapshot", lambda repo_id: snapshots[repo_id])
    monkeypatch.setattr(hub, "cache_dir", lambda: cache)
    findings = {finding.name: finding for finding in doctor.run_checks(tiny_smoke=False)}
    assert findings["weights:HY-Motion-1.0-Lite"].status == OK
    qwen = findings["weights:Qwen3-8B"]
    assert qwen.status == FAIL and "interrupted download" in qwen.detail
    assert qwen.advice == "Complete the download: hymotion download --variant lite"
    clip = findings["weights:clip-vit-large-patch14"]
    assert clip.status == FAIL and "not in the Hugging Face cache" in clip.detail
    assert findings["disk"].data["path"] == str(cache)
