"""The gpu plan's early Qwen3 upload: its files copied as byte ranges give exactly their tensors, and a failure of it
fails no start."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from hymotion.model.text_encoder import EarlyQwenUpload, qwen_base_name
from hymotion.model.tiny import build_tiny_text_encoder
from hymotion.pipeline import layer_streaming
from hymotion.pipeline.layer_streaming import upload_safetensors

BACKEND = Path(__file__).resolve().parents[2] / "backend"


def write_safetensors(path: Path, tensors: list[tuple[str, torch.Tensor]]) -> None:
    """A safetensors file with the tensors in this order and no padding between them, as the format allows (the
    library's own writer sorts and aligns them, so it never makes a tensor start off its element boundary)."""
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors:
        blob = tensor.contiguous().view(torch.uint8).numpy().tobytes()
        dtype = {torch.bfloat16: "BF16", torch.float32: "F32", torch.int64: "I64"}[tensor.dtype]
        header[name] = {"dtype": dtype, "shape": list(tensor.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + b"".join(blobs))


def test_byte_range_upload_gives_each_kept_tensor_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(layer_streaming, "UPLOAD_STAGING_BYTES", 64)  # several pieces per range
    generator = torch.Generator().manual_seed(0)
    first = [
        ("model.embed_tokens.weight", torch.randn(5, 7, generator=generator).to(torch.bfloat16)),  # 70 bytes
        ("model.layers.0.scale", torch.randn(3, generator=generator)),  # f32 at byte 70: off its 4-byte boundary
        ("lm_head.weight", torch.randn(4, 4, generator=generator).to(torch.bfloat16)),  # skipped: two ranges
        ("model.layers.0.positions", torch.arange(11)),
    ]
    second = [("model.norm.weight", torch.randn(9, generator=generator).to(torch.bfloat16))]
    write_safetensors(tmp_path / "a.safetensors", first)
    write_safetensors(tmp_path / "b.safetensors", second)
    uploaded = upload_safetensors([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], torch.device("cpu"),
                                  qwen_base_name)
    expected = {qwen_base_name(key): tensor for key, tensor in first + second if not key.startswith("lm_head.")}
    assert sorted(uploaded) == sorted(expected)
    for name, tensor in expected.items():
        assert uploaded[name].dtype == tensor.dtype and torch.equal(uploaded[name], tensor), name


def tiny_qwen_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "qwen"
    build_tiny_text_encoder().qwen_model.save_pretrained(folder)
    return folder


def test_the_early_upload_hands_qwen_over_once_and_a_failure_only_logs(tmp_path, caplog):
    folder = tiny_qwen_folder(tmp_path)
    early = EarlyQwenUpload(folder, torch.device("cpu"))
    uploaded = early.result()
    files = load_file(next(folder.glob("*.safetensors")))
    assert uploaded is not None and sorted(uploaded) == sorted(qwen_base_name(key) for key in files)
    assert all(torch.equal(uploaded[qwen_base_name(key)], tensor) for key, tensor in files.items())
    assert early.result() is None, "handed over once"

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with caplog.at_level(logging.INFO, logger="hymotion.model.text_encoder"):
        assert EarlyQwenUpload(broken, torch.device("cpu")).result() is None
    assert "failed" in caplog.text and "uploaded when the text encoder loads" in caplog.text


def test_importing_the_pipeline_leaves_diffusers_and_transformers_to_load_pipeline():
    """load_pipeline starts the gpu plan's early upload before it imports them: imported earlier, nothing overlaps."""
    check = "import sys, hymotion.pipeline.sampling; print(sorted({'diffusers', 'transformers'} & set(sys.modules)))"
    environment = {**os.environ, "PYTHONPATH": str(BACKEND)}
    result = subprocess.run([sys.executable, "-c", check], env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
