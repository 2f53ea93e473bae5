"""Where model files live and how they get there: hub downloads, local folders, and the error when they are missing.

Layouts understood, for a variant folder:
- official: ``config.yml`` + ``latest.ckpt`` (what ``tencent/HY-Motion-1.0`` publishes per sub-folder);
- converted: ``transformer/`` (diffusers ``save_pretrained``) + ``conditioning.safetensors`` (``hymotion convert``).
With ``--model-dir DIR`` everything sits under DIR (``DIR/HY-Motion-1.0-Lite``, ``DIR/Qwen3-8B``,
``DIR/clip-vit-large-patch14``, the official ``ckpts/`` layout); otherwise in the standard Hugging Face cache.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .shared.errors import BAD_CHECKPOINT, WEIGHTS_MISSING, HyMotionError, bad_request

MODEL_REPO_ID = "tencent/HY-Motion-1.0"
QWEN_REPO_ID = "Qwen/Qwen3-8B"
CLIP_REPO_ID = "openai/clip-vit-large-patch14"
VARIANT_FOLDERS = {"lite": "HY-Motion-1.0-Lite", "standard": "HY-Motion-1.0"}
TEXT_ENCODER_FOLDERS = {QWEN_REPO_ID: "Qwen3-8B", CLIP_REPO_ID: "clip-vit-large-patch14"}
# The standard DiT's width; Lite's is 1024 (the official configs' feat_dim).
STANDARD_FEAT_DIM = 1280
PICKLED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TEXT_ENCODER_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "merges.txt", "vocab.json"]


@dataclass(frozen=True)
class ModelFiles:
    variant: str
    model_folder: Path
    qwen_folder: Path
    clip_folder: Path


def download_command(variant: str, model_dir: str | os.PathLike | None) -> str:
    command = f"hymotion download --variant {variant}"
    return f"{command} --model-dir {model_dir}" if model_dir else command


def is_variant_folder(folder: Path) -> bool:
    official = (folder / "config.yml").is_file() and (folder / "latest.ckpt").is_file()
    converted = (folder / "transformer" / "config.json").is_file() and (folder / "conditioning.safetensors").is_file()
    return official or converted


def folder_variant(folder: Path) -> str:
    """lite or standard, by the DiT's width in a model folder's config, read without loading the model (the memory
    plan is chosen before loading starts); an unreadable config reads as lite and fails properly when loaded."""
    import yaml

    try:
        converted = folder / "transformer" / "config.json"
        if converted.is_file():
            width = json.loads(converted.read_text(encoding="utf-8")).get("feat_dim", 0)
        else:
            config = yaml.safe_load((folder / "config.yml").read_text(encoding="utf-8"))
            width = config["network_module_args"].get("feat_dim", 0)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError):
        return "lite"
    return "standard" if isinstance(width, int) and width >= STANDARD_FEAT_DIM else "lite"


class SafetensorsHeaderError(ValueError):
    """A safetensors file whose header cannot be read; the message says what is wrong with it."""


def read_safetensors_header(path: Path) -> tuple[int, dict[str, dict]]:
    """Where a safetensors file's data starts, and its tensors (dtype, shape, data_offsets) by name, from the header:
    8 bytes of little-endian length, then that many bytes of JSON (the format's specification). Raises
    SafetensorsHeaderError for a truncated or malformed header, OSError when the file cannot be read."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise SafetensorsHeaderError(f"truncated: {size} bytes, shorter than a safetensors header")
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise SafetensorsHeaderError(f"truncated: the header claims {length:,} bytes but the file has {size:,}")
        try:
            header = json.loads(handle.read(length))
        except ValueError as error:  # JSON and UTF-8 decoding errors alike
            raise SafetensorsHeaderError(f"unreadable safetensors header ({error})") from None
    if not isinstance(header, dict):
        raise SafetensorsHeaderError("unreadable safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    return 8 + length, header


def cached_snapshot(repo_id: str, allow_patterns: list[str] | None = None) -> Path | None:
    """The repository's snapshot in the local Hugging Face cache, or None; never touches the network."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns, local_files_only=True))
    except Exception:
        return None


def model_root(model_dir: str | os.PathLike | None) -> Path | None:
    """The folder that holds the variant folders and text encoders. A model folder pointed at a variant folder
    itself (``.../HY-Motion-1.0-Lite``, one level too deep: likely for someone who already has the weights) means
    its parent; None for the Hugging Face cache."""
    if not model_dir:
        return None
    root = Path(model_dir)
    if root.name in VARIANT_FOLDERS.values() or is_variant_folder(root):
        return root.parent
    return root


def _missing(what: str, variant: str, model_dir) -> HyMotionError:
    return HyMotionError(
        WEIGHTS_MISSING,
        f"{what} is not downloaded{f' in {model_dir}' if model_dir else ''}.",
        f"Run: {download_command(variant, model_dir)}",
    )


def locate(variant: str, model_dir: str | os.PathLike | None = None) -> ModelFiles:
    """Find the variant's DiT folder and both text encoders locally, or raise ``weights_missing`` with the command."""
    if variant not in VARIANT_FOLDERS:
        raise bad_request(f"Unknown model variant {variant!r}.", "Use lite or standard.")
    sub = VARIANT_FOLDERS[variant]
    if model_dir:
        root = model_root(model_dir) or Path(model_dir)
        model_dir = str(root)
        model_folder, qwen, clip = root / sub, root / "Qwen3-8B", root / "clip-vit-large-patch14"
        if not is_variant_folder(model_folder):
            raise _missing(f"HY-Motion {variant} ({sub})", variant, model_dir)
    else:
        snapshot = cached_snapshot(MODEL_REPO_ID, [f"{sub}/*"])
        if snapshot is None or not is_variant_folder(snapshot / sub):
            raise _missing(f"HY-Motion {variant} ({MODEL_REPO_ID}/{sub})", variant, None)
        model_folder = snapshot / sub
        qwen = cached_snapshot(QWEN_REPO_ID, TEXT_ENCODER_PATTERNS) or Path("/nonexistent")
        clip = cached_snapshot(CLIP_REPO_ID, TEXT_ENCODER_PATTERNS) or Path("/nonexistent")
    for name, folder in ((QWEN_REPO_ID, qwen), (CLIP_REPO_ID, clip)):
        check_text_encoder_folder(name, folder, variant, model_dir)
    return ModelFiles(variant, model_folder, qwen, clip)


def check_text_encoder_folder(repo_id: str, folder: Path, variant: str, model_dir) -> None:
    """A text encoder folder must hold config.json and safetensors weights. Pickled weights (pytorch_model.bin and
    the like) are refused by name before anything opens them: a pickle can run code, and transformers would load one."""
    if not (folder / "config.json").is_file():
        raise _missing(f"Text encoder {repo_id}", variant, model_dir)
    if any(folder.glob("*.safetensors")):
        return
    pickled = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLED_WEIGHT_SUFFIXES)
    if not pickled:
        raise _missing(f"Text encoder {repo_id} (its .safetensors weights)", variant, model_dir)
    raise HyMotionError(
        BAD_CHECKPOINT,
        f"Text encoder {repo_id} in {folder} holds only pickled weights ({', '.join(pickled[:3])}); this backend "
        "loads .safetensors weights only, since a pickle can run code.",
        f"Fetch the safetensors files with: {download_command(variant, model_dir)}",
    )


def checked_variant_folder(folder: Path) -> Path:
    if not is_variant_folder(folder):
        raise HyMotionError(BAD_CHECKPOINT, f"{folder} holds neither config.yml + latest.ckpt nor a converted model.",
                            "Point --model at an HY-Motion-1.0-Lite or HY-Motion-1.0 folder, or use --model lite.")
    return folder


def locate_for_folder(folder: Path, model_dir: str | os.PathLike | None = None) -> ModelFiles:
    """A model folder given by path; its text encoders sit beside it (official ``ckpts/`` layout) or in the cache."""
    checked_variant_folder(folder)
    root = model_root(model_dir) or folder.parent
    found: dict[str, Path] = {}
    for repo_id, name in TEXT_ENCODER_FOLDERS.items():
        local = root / name
        encoder = local if (local / "config.json").is_file() else cached_snapshot(repo_id, TEXT_ENCODER_PATTERNS)
        if encoder is None:
            raise _missing(f"Text encoder {repo_id}", "lite", model_dir)
        check_text_encoder_folder(repo_id, encoder, "lite", model_dir)
        found[repo_id] = encoder
    return ModelFiles("custom", folder, found[QWEN_REPO_ID], found[CLIP_REPO_ID])


def download(variant: str, model_dir: str | os.PathLike | None = None) -> ModelFiles:
    """Fetch the DiT and both text encoders (resumable; huggingface_hub shows progress bars)."""
    from huggingface_hub import snapshot_download

    from .hub_errors import is_unreachable, unreachable_error

    sub = VARIANT_FOLDERS[variant]
    root = model_root(model_dir)
    fetches = [(MODEL_REPO_ID, [f"{sub}/*"], root)] + [
        (repo_id, TEXT_ENCODER_PATTERNS, root / folder if root else None)
        for repo_id, folder in TEXT_ENCODER_FOLDERS.items()
    ]
    for repo_id, patterns, local_dir in fetches:
        try:
            snapshot_download(repo_id, allow_patterns=patterns, local_dir=local_dir)
        except Exception as error:  # huggingface_hub raises many kinds; only an unreachable host is reworded
            if is_unreachable(error):
                raise unreachable_error(error, repo_id, ", ".join([sub, *TEXT_ENCODER_FOLDERS.values()])) from None
            raise
    return locate(variant, root)
