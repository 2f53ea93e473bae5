"""Loading the DiT and its pipeline tensors from an official ``latest.ckpt`` + ``config.yml`` or our converted layout.

The official checkpoint is a torch zip pickle; it is opened with ``weights_only=True`` only. Inside
``motion_transformer.*`` and the pipeline tensors the check is strict: a missing, unexpected or misshapen key is an
error naming it. Keys outside them (training leftovers, body-model buffers) are listed in a warning and skipped.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from ..pipeline.motion import LATENT_DIM
from ..shared.errors import BAD_CHECKPOINT, HyMotionError
from .checks import check_finite, check_pipeline_settings, check_pipeline_tensors
from .transformer import HunyuanMotionMMDiT

log = logging.getLogger(__name__)

DIT_PREFIX = "motion_transformer."
REQUIRED_PIPELINE_TENSORS = ("null_vtxt_feat", "null_ctxt_input")
OPTIONAL_PIPELINE_TENSORS = ("special_game_vtxt_feat", "special_game_ctxt_feat", "mean", "std")
CONDITIONING_FILE = "conditioning.safetensors"
PIPELINE_FILE = "pipeline.json"

# Official network arguments whose values our implementation assumes; anything else is refused by name. A key the
# config leaves out takes the official constructor's default, which must match too.
_OFFICIAL_DEFAULTS = {
    "mask_mode": None,
    "apply_rope_to_single_branch": True,
    "insert_start_token": False,
    "with_long_skip_connection": False,
    "qk_norm_type": "rms",
    "mlp_act_type": "gelu_tanh",
    "qkv_bias": True,
}
_ASSUMED_NETWORK_ARGS = {
    "mask_mode": "narrowband",
    "apply_rope_to_single_branch": False,
    "insert_start_token": False,
    "with_long_skip_connection": False,
    "qk_norm_type": "rms",
    "mlp_act_type": "gelu_tanh",
    "qkv_bias": True,
}
_CONFIG_KEYS = ("input_dim", "output_dim", "feat_dim", "ctxt_input_dim", "vtxt_input_dim", "num_layers", "num_heads",
                "mlp_ratio", "time_factor", "narrowband_length")


@dataclass
class PipelineSettings:
    """What the official config says about sampling, kept beside the weights."""

    train_frames: int = 360
    cfg_scale: float = 5.0
    steps: int = 50
    enable_ctxt_null_feat: bool = True
    max_text_tokens: int = 128


@dataclass
class LoadedModel:
    transformer: HunyuanMotionMMDiT
    conditioning: dict[str, torch.Tensor]  # null_vtxt_feat, null_ctxt_input, mean, std (+ optional extras)
    settings: PipelineSettings


def _bad(message: str, hint: str = "") -> HyMotionError:
    return HyMotionError(BAD_CHECKPOINT, message, hint or "Re-download it with `hymotion download`, or point at a "
                         "folder holding the official config.yml + latest.ckpt.")


def read_official_config(path: Path) -> tuple[dict, PipelineSettings]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise _bad(f"{path} is not a readable YAML config: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("network_module_args"), dict):
        raise _bad(f"{path} has no network_module_args section; it is not an HY-Motion config.yml.")
    args = config["network_module_args"]
    for key, assumed in _ASSUMED_NETWORK_ARGS.items():
        value = args.get(key, _OFFICIAL_DEFAULTS[key])
        if value != assumed:
            raise _bad(f"{path}: network_module_args.{key} = {value!r}{'' if key in args else ' (by default)'}, "
                       f"but only {assumed!r} is supported.",
                       "This checkpoint uses an architecture variant this backend does not implement.")
    model_config = {key: args[key] for key in _CONFIG_KEYS if key in args}
    refiner = args.get("text_refiner_cfg") or {}
    if "num_layers" in refiner:
        model_config["refiner_num_layers"] = refiner["num_layers"]
    pipeline_args = _section(config, "train_pipeline_args", path)
    settings = PipelineSettings(**check_pipeline_settings({
        "train_frames": pipeline_args.get("train_frames", 360),
        "cfg_scale": _section(pipeline_args, "test_cfg", path).get("text_guidance_scale", 5.0),
        "steps": _section(pipeline_args, "infer_noise_scheduler_cfg", path).get("validation_steps", 50),
        "enable_ctxt_null_feat": pipeline_args.get("enable_ctxt_null_feat", True),
        "max_text_tokens": _section(pipeline_args, "text_encoder_cfg", path).get("max_length_llm", 128),
    }, str(path)))
    model_config["train_frames"] = settings.train_frames
    return model_config, settings


def _section(config: dict, key: str, path: Path) -> dict:
    """A sub-section of the official config (empty when left out); anything but a mapping is refused by name."""
    section = config.get(key)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise _bad(f"{path}: {key} must be a mapping, not {type(section).__name__}.")
    return section


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The flat state dict of an official checkpoint, read without unpickling arbitrary objects."""
    if not zipfile.is_zipfile(path):
        raise _bad(f"{path} is not a torch checkpoint (not a zip archive; a Git LFS pointer or a truncated download?).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise _bad(f"{path} could not be read as a weights-only checkpoint: {torch_reason(error)}") from None
    state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _bad(f"{path} holds no tensor state dict under 'model_state_dict'.")
    return state


def torch_reason(error: BaseException) -> str:
    """What torch says is wrong with a file, without its advice to load it with ``weights_only=False``: that
    would unpickle whatever the file holds, which this backend never does (docs/security.md)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text[text.index(marker) + len(marker):]
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line
             and "torch.serialization" not in line and "do those steps only" not in line]
    reason = lines[0] if lines else type(error).__name__
    return reason[:300]


def split_state(
    state: dict[str, torch.Tensor], transformer: HunyuanMotionMMDiT, source: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Strictly match ``motion_transformer.*`` against the model and pick the pipeline tensors."""
    dit = {key[len(DIT_PREFIX):]: value for key, value in state.items() if key.startswith(DIT_PREFIX)}
    pipeline = {
        key: value for key, value in state.items() if key in REQUIRED_PIPELINE_TENSORS + OPTIONAL_PIPELINE_TENSORS
    }
    skipped = sorted(set(state) - {DIT_PREFIX + key for key in dit} - set(pipeline))
    if skipped:
        log.warning("%s: skipping %d keys outside the model: %s", source, len(skipped), ", ".join(skipped[:20]))
    check_state_dict(dit, transformer, source)
    missing = [key for key in REQUIRED_PIPELINE_TENSORS if key not in pipeline]
    if missing:
        raise _bad(f"{source} lacks the pipeline tensors {', '.join(missing)}.")
    return dit, pipeline


def check_state_dict(dit: dict[str, torch.Tensor], transformer: HunyuanMotionMMDiT, source: str) -> None:
    expected = transformer.state_dict()
    missing = sorted(set(expected) - set(dit))
    unexpected = sorted(set(dit) - set(expected))
    misshapen = sorted(
        f"{key} {tuple(dit[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(dit) & set(expected)
        if dit[key].shape != expected[key].shape
    )
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("misshapen", misshapen)):
        if keys:
            shown = ", ".join(DIT_PREFIX + key for key in keys[:10])
            more = f" (and {len(keys) - 10} more)" if len(keys) > 10 else ""
            problems.append(f"{len(keys)} {label} keys: {shown}{more}")
    if problems:
        raise _bad(f"{source} does not match the model built from its config: " + "; ".join(problems))


def load_stats(folder: Path, pipeline: dict[str, torch.Tensor], config_path: Path) -> None:
    """Prefer the checkpoint's mean/std; else the official stats folder (``mean_std_dir``) next to the config."""
    if "mean" in pipeline and "std" in pipeline:
        return
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    stats_dir = ((config.get("train_pipeline_args") or {}).get("test_cfg") or {}).get("mean_std_dir", "./stats/")
    for candidate in (folder / stats_dir, folder.parent / stats_dir, folder / "stats"):
        mean, std = candidate / "Mean.npy", candidate / "Std.npy"
        if mean.is_file() and std.is_file():
            pipeline["mean"], pipeline["std"] = _read_statistic(mean), _read_statistic(std)
            return
    raise _bad(f"No normalisation statistics: the checkpoint has no mean/std and no Mean.npy/Std.npy was found "
               f"under {folder / stats_dir}.", "Put the official stats/Mean.npy and stats/Std.npy next to config.yml.")


def _read_statistic(path: Path) -> torch.Tensor:
    """One of Mean.npy / Std.npy: a plain array of LATENT_DIM numbers; a pickled or damaged file is refused by name."""
    try:
        values = np.load(path, allow_pickle=False)
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
    except (OSError, ValueError, TypeError, EOFError) as error:
        raise _bad(f"{path} is not a plain numpy array of numbers ({error}).",
                   f"Replace it with the official stats/{path.name}; pickled .npy files are never loaded.") from None
    if flat.size != LATENT_DIM or not np.isfinite(flat).all():
        raise _bad(f"{path} holds {flat.size} numbers{'' if np.isfinite(flat).all() else ' (some not finite)'}; "
                   f"the model's statistics are {LATENT_DIM} finite numbers.",
                   f"Replace it with the official stats/{path.name}.")
    return torch.from_numpy(flat.copy())


def load_official(folder: Path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    model_config, settings = read_official_config(folder / "config.yml")
    with torch.device("meta"):
        transformer = HunyuanMotionMMDiT(**model_config)
    dit, pipeline = split_state(read_checkpoint(folder / "latest.ckpt"), transformer, str(folder / "latest.ckpt"))
    check_finite(dit.items(), str(folder / "latest.ckpt"), DIT_PREFIX)
    transformer.load_state_dict({key: value.to(dtype) for key, value in dit.items()}, strict=True, assign=True)
    load_stats(folder, pipeline, folder / "config.yml")
    check_pipeline_tensors(pipeline, str(folder / "latest.ckpt"))
    return LoadedModel(transformer.eval(), {k: v.float().contiguous() for k, v in pipeline.items()}, settings)


def load_converted(folder: Path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    try:
        transformer = HunyuanMotionMMDiT.from_pretrained(folder / "transformer", torch_dtype=dtype)
        conditioning = load_file(folder / CONDITIONING_FILE)
        recorded = json.loads((folder / PIPELINE_FILE).read_text())
    except (OSError, ValueError, TypeError, RuntimeError) as error:
        raise _bad(f"{folder} is not a readable converted model: {error}",
                   "Convert the official folder again with `hymotion convert`.") from None
    except RecursionError:
        raise _bad(f"{folder / PIPELINE_FILE} nests too deeply to be pipeline settings.") from None
    settings = PipelineSettings(**check_pipeline_settings(recorded, str(folder / PIPELINE_FILE)))
    missing = [key for key in REQUIRED_PIPELINE_TENSORS + ("mean", "std") if key not in conditioning]
    if missing:
        raise _bad(f"{folder / CONDITIONING_FILE} lacks {', '.join(missing)}.")
    check_pipeline_tensors(conditioning, str(folder / CONDITIONING_FILE))
    check_finite(transformer.state_dict().items(), str(folder / "transformer"))
    return LoadedModel(transformer.eval(), conditioning, settings)


def load_model_folder(folder: str | Path, dtype: torch.dtype = torch.float32) -> LoadedModel:
    folder = Path(folder)
    if (folder / "transformer" / "config.json").is_file():
        return load_converted(folder, dtype)
    if (folder / "config.yml").is_file() and (folder / "latest.ckpt").is_file():
        return load_official(folder, dtype)
    raise _bad(f"{folder} holds neither config.yml + latest.ckpt nor a converted model (transformer/).")


def save_converted(model: LoadedModel, folder: str | Path) -> Path:
    """Our layout: diffusers ``save_pretrained`` for the DiT, safetensors for the pipeline tensors."""
    folder = Path(folder)
    model.transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    save_file({key: value.contiguous() for key, value in model.conditioning.items()}, folder / CONDITIONING_FILE)
    (folder / PIPELINE_FILE).write_text(json.dumps(model.settings.__dict__, indent=2))
    return folder
