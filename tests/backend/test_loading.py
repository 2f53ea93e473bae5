"""Loading official checkpoints key for key, refusing what is not one, and the safetensors conversion."""

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hymotion.cli import main
from hymotion.model.loading import (
    DIT_PREFIX,
    check_state_dict,
    load_model_folder,
    save_converted,
    split_state,
)
from hymotion.model.tiny import TINY_DIT_CONFIG, randomize_parameters
from hymotion.model.transformer import HunyuanMotionMMDiT
from hymotion.shared.errors import BAD_CHECKPOINT, HyMotionError

LITE = dict(feat_dim=1024, num_layers=18, num_heads=16)
STANDARD = dict(feat_dim=1280, num_layers=27, num_heads=20)
VARIANTS = {"lite": (LITE, 460_841_673, 302), "standard": (STANDARD, 1_042_868_681, 422)}
# A few keys and shapes as the official HunyuanMotionMMDiT names them (read off its module tree), per variant.
OFFICIAL_ANCHORS = {
    "lite": {
        "motion_transformer.input_encoder.weight": (1024, 201),
        "motion_transformer.ctxt_encoder.weight": (1024, 4096),
        "motion_transformer.vtxt_encoder.linears.0.weight": (1024, 768),
        "motion_transformer.vtxt_encoder.linears.2.weight": (1024, 1024),
        "motion_transformer.timestep_encoder.blocks.2.bias": (1024,),
        "motion_transformer.text_refiner.individual_token_refiner.blocks.1.self_attn_q_norm.bias": (64,),
        "motion_transformer.text_refiner.individual_token_refiner.blocks.1.adaLN_modulation.linear.weight": (
            2048, 1024,
        ),
        "motion_transformer.double_blocks.5.text_mod.linear.weight": (6144, 1024),
        "motion_transformer.double_blocks.0.motion_k_norm.weight": (64,),
        "motion_transformer.single_blocks.11.linear1.weight": (7168, 1024),
        "motion_transformer.single_blocks.11.linear2.weight": (1024, 5120),
        "motion_transformer.final_layer.adaLN_modulation.linear.weight": (2048, 1024),
        "motion_transformer.final_layer.linear.weight": (201, 1024),
    },
    "standard": {
        "motion_transformer.double_blocks.8.motion_qkv.weight": (3840, 1280),
        "motion_transformer.double_blocks.8.motion_q_norm.weight": (64,),
        "motion_transformer.single_blocks.17.linear1.weight": (8960, 1280),
        "motion_transformer.single_blocks.17.modulation.linear.weight": (3840, 1280),
        "motion_transformer.final_layer.linear.weight": (201, 1280),
    },
}
PIPELINE_SHAPES = {"null_vtxt_feat": (1, 1, 768), "null_ctxt_input": (1, 1, 4096), "mean": (201,), "std": (201,)}
LEFTOVERS = {"body_model.faces": (20908, 3), "ema_model.num_updates": (), "body_model.v_template": (10475, 3)}

TINY = TINY_DIT_CONFIG
TINY_REFINER_LAYERS = 1


def meta_model(config: dict) -> HunyuanMotionMMDiT:
    with torch.device("meta"):
        return HunyuanMotionMMDiT(**config)


def official_meta_state(config: dict) -> dict[str, torch.Tensor]:
    """A state dict laid out like an official latest.ckpt, shapes only (meta tensors, nothing allocated)."""
    state = {DIT_PREFIX + key: value for key, value in meta_model(config).state_dict().items()}
    for name, shape in {**PIPELINE_SHAPES, **LEFTOVERS}.items():
        state[name] = torch.empty(shape, device="meta")
    return state


@pytest.mark.parametrize("variant", ["lite", "standard"])
def test_official_layout_of_both_variants_passes_the_strict_check(variant, caplog):
    config, parameters, key_count = VARIANTS[variant]
    state = official_meta_state(config)
    dit_keys = [key for key in state if key.startswith(DIT_PREFIX)]
    assert len(dit_keys) == key_count
    assert sum(state[key].numel() for key in dit_keys) == parameters
    for key, shape in OFFICIAL_ANCHORS[variant].items():
        assert tuple(state[key].shape) == shape, key

    with caplog.at_level(logging.WARNING, logger="hymotion.model.loading"):
        dit, pipeline = split_state(state, meta_model(config), "latest.ckpt")
    assert len(dit) == key_count and set(pipeline) == set(PIPELINE_SHAPES)
    check_state_dict(dit, meta_model(config), "latest.ckpt")
    warning = " ".join(record.getMessage() for record in caplog.records)
    assert all(name in warning for name in LEFTOVERS)


def strict_error(dit: dict, config: dict = LITE) -> HyMotionError:
    with pytest.raises(HyMotionError) as caught:
        check_state_dict(dit, meta_model(config), "latest.ckpt")
    assert caught.value.code == BAD_CHECKPOINT
    return caught.value


def lite_dit() -> dict[str, torch.Tensor]:
    return dict(meta_model(LITE).state_dict())


def test_strict_check_names_a_missing_key():
    dit = lite_dit()
    del dit["double_blocks.3.text_mlp.fc2.bias"]
    error = strict_error(dit)
    assert "1 missing" in error.message and "motion_transformer.double_blocks.3.text_mlp.fc2.bias" in error.message


def test_strict_check_names_an_unexpected_key():
    dit = lite_dit()
    dit["double_blocks.6.motion_mod.linear.weight"] = torch.empty(6144, 1024, device="meta")
    error = strict_error(dit)
    assert "1 unexpected" in error.message
    assert "motion_transformer.double_blocks.6.motion_mod.linear.weight" in error.message


def test_strict_check_names_a_misshapen_key_with_both_shapes():
    dit = lite_dit()
    dit["final_layer.linear.weight"] = torch.empty(201, 1280, device="meta")
    error = strict_error(dit)
    assert "1 misshapen" in error.message
    assert "motion_transformer.final_layer.linear.weight (201, 1280) != (201, 1024)" in error.message


def test_standard_checkpoint_under_a_lite_config_is_refused_with_a_summary():
    dit = dict(meta_model(STANDARD).state_dict())
    error = strict_error(dit)
    assert "unexpected" in error.message and "misshapen" in error.message and "more)" in error.message


def test_missing_null_embedding_is_named():
    state = official_meta_state(LITE)
    del state["null_ctxt_input"]
    with pytest.raises(HyMotionError, match="null_ctxt_input") as caught:
        split_state(state, meta_model(LITE), "latest.ckpt")
    assert caught.value.code == BAD_CHECKPOINT


# --- real round trips at tiny size ----------------------------------------------------------------------------------


def official_config(**network_overrides) -> dict:
    network = {
        "input_dim": 201, "output_dim": 201, **TINY, "mlp_act_type": "gelu_tanh", "norm_type": "layer",
        "qk_norm_type": "rms", "qkv_bias": True, "dropout": 0.0, "mask_mode": "narrowband", "narrowband_length": 2.0,
        "apply_rope_to_single_branch": False, "insert_start_token": False, "with_long_skip_connection": False,
        "time_factor": 1000.0, "text_refiner_module": "hymotion/network/token_refiner.SingleTokenRefiner",
        "text_refiner_cfg": {"num_layers": TINY_REFINER_LAYERS},
        "final_layer_module": "hymotion/network/encoders.FinalLayer", "final_layer_cfg": {"act_type": "silu"},
    }
    network.update(network_overrides)
    return {
        "network_module": "hymotion/network/hymotion_mmdit.HunyuanMotionMMDiT",
        "network_module_args": network,
        "train_pipeline": "hymotion/pipeline/motion_diffusion.MotionFlowMatching",
        "train_pipeline_args": {
            "train_frames": 360,
            "enable_ctxt_null_feat": True,
            "random_generator_on_gpu": True,
            "text_encoder_module": "hymotion/network/text_encoders/text_encoder.HYTextModel",
            "text_encoder_cfg": {"llm_type": "qwen3", "max_length_llm": 128},
            "test_cfg": {"mean_std_dir": "./stats/", "text_guidance_scale": 4.0},
            "infer_noise_scheduler_cfg": {"validation_steps": 30},
            "optimizer_cfg": {"lr": 1e-4},
        },
        "some_future_section": {"anything": [1, 2, 3]},
    }


def tiny_source() -> tuple[HunyuanMotionMMDiT, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(11)
    model = HunyuanMotionMMDiT(**TINY, refiner_num_layers=TINY_REFINER_LAYERS)
    randomize_parameters(model, generator)
    pipeline = {
        "null_vtxt_feat": torch.randn(1, 1, TINY["vtxt_input_dim"], generator=generator),
        "null_ctxt_input": torch.randn(1, 1, TINY["ctxt_input_dim"], generator=generator),
        "mean": torch.randn(201, generator=generator),
        "std": torch.rand(201, generator=generator) + 0.1,
    }
    return model.eval(), pipeline


def write_official_folder(folder: Path, model, pipeline, config=None, with_stats_in_checkpoint=True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(yaml.safe_dump(config or official_config()))
    state = {DIT_PREFIX + key: value for key, value in model.state_dict().items()}
    state.update({k: v for k, v in pipeline.items() if with_stats_in_checkpoint or k not in ("mean", "std")})
    state["body_model.faces"] = torch.zeros(4, 3, dtype=torch.int64)
    torch.save({"model_state_dict": state, "epoch": 12, "global_step": 34000}, folder / "latest.ckpt")
    return folder


def outputs(model: HunyuanMotionMMDiT) -> torch.Tensor:
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(2, 50, 201, generator=generator)
    ctxt = torch.randn(2, 7, TINY["ctxt_input_dim"], generator=generator)
    vtxt = torch.randn(2, 1, TINY["vtxt_input_dim"], generator=generator)
    layout = model.build_layout(torch.arange(50)[None] < torch.tensor([[50], [31]]), torch.ones(2, 7, dtype=torch.bool))
    with torch.no_grad():
        return model(x, ctxt, vtxt, torch.tensor([0.2, 0.9]), layout)


@pytest.fixture(scope="module")
def source():
    return tiny_source()


@pytest.fixture
def official_folder(tmp_path, source):
    return write_official_folder(tmp_path / "HY-Motion-1.0-Lite", *source)


def assert_same_model(loaded, source_model, source_pipeline):
    torch.testing.assert_close(outputs(loaded.transformer), outputs(source_model), atol=0, rtol=0)
    assert set(loaded.conditioning) == set(source_pipeline)
    for key, value in source_pipeline.items():
        torch.testing.assert_close(loaded.conditioning[key], value, atol=0, rtol=0)


def test_official_folder_round_trip_gives_the_same_model(official_folder, source, caplog):
    with caplog.at_level(logging.WARNING, logger="hymotion.model.loading"):
        loaded = load_model_folder(official_folder)
    assert_same_model(loaded, *source)
    assert loaded.transformer.config.refiner_num_layers == TINY_REFINER_LAYERS
    assert (loaded.settings.cfg_scale, loaded.settings.steps, loaded.settings.max_text_tokens) == (4.0, 30, 128)
    assert "body_model.faces" in caplog.text, "keys outside the model are listed in a warning"


def test_statistics_come_from_the_stats_folder_when_the_checkpoint_has_none(tmp_path, source):
    model, pipeline = source
    folder = write_official_folder(tmp_path / "lite", model, pipeline, with_stats_in_checkpoint=False)
    (folder / "stats").mkdir()
    np.save(folder / "stats" / "Mean.npy", pipeline["mean"].numpy())
    np.save(folder / "stats" / "Std.npy", pipeline["std"].numpy())
    assert_same_model(load_model_folder(folder), model, pipeline)


def test_no_statistics_anywhere_is_a_clear_error(tmp_path, source):
    folder = write_official_folder(tmp_path / "lite", *source, with_stats_in_checkpoint=False)
    with pytest.raises(HyMotionError, match="Mean.npy") as caught:
        load_model_folder(folder)
    assert caught.value.code == BAD_CHECKPOINT


@pytest.mark.parametrize(
    "key, value",
    [("mask_mode", "causal"), ("apply_rope_to_single_branch", True), ("qk_norm_type", "layer")],
)
def test_unsupported_architecture_is_refused_by_name(tmp_path, source, key, value):
    folder = write_official_folder(tmp_path / "lite", *source, config=official_config(**{key: value}))
    with pytest.raises(HyMotionError) as caught:
        load_model_folder(folder)
    assert caught.value.code == BAD_CHECKPOINT
    assert key in caught.value.message and repr(value) in caught.value.message


def test_config_without_network_arguments_is_refused(official_folder):
    (official_folder / "config.yml").write_text("train_pipeline_args: {}\n")
    with pytest.raises(HyMotionError, match="network_module_args") as caught:
        load_model_folder(official_folder)
    assert caught.value.code == BAD_CHECKPOINT


def torch_save_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"model_state_dict": {"motion_transformer.x": torch.randn(64, 64)}}, buffer)
    return buffer.getvalue()


LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 1843212345\n"
)
NOT_CHECKPOINTS = {
    "text": lambda: b"this is not a checkpoint\n",
    "git_lfs_pointer": lambda: LFS_POINTER.encode(),
    "truncated_zip": lambda: torch_save_bytes()[:3000],
    "empty": lambda: b"",
}


@pytest.mark.parametrize("kind", sorted(NOT_CHECKPOINTS))
def test_a_file_that_is_not_a_checkpoint_is_bad_checkpoint(official_folder, kind):
    (official_folder / "latest.ckpt").write_bytes(NOT_CHECKPOINTS[kind]())
    with pytest.raises(HyMotionError) as caught:
        load_model_folder(official_folder)
    assert caught.value.code == BAD_CHECKPOINT
    assert caught.value.__cause__ is None, "the user sees our message, not a chained unpickling traceback"
    assert "latest.ckpt" in caught.value.message and caught.value.hint


def corrupt_pickle_string() -> bytes:
    """Bit rot inside the pickle of an intact zip: a key's UTF-8 bytes replaced by invalid ones."""
    data = torch_save_bytes()
    at = data.index(b"model_state_dict")
    return data[:at] + b"\xff" * len(b"model_state_dict") + data[at + len(b"model_state_dict") :]


def corrupt_byteorder_record() -> bytes:
    original = zipfile.ZipFile(io.BytesIO(torch_save_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as rewritten:
        for name in original.namelist():
            content = original.read(name)
            rewritten.writestr(name, content[:3] if name.endswith("/byteorder") else content)
    return buffer.getvalue()


@pytest.mark.parametrize("damage", [corrupt_pickle_string, corrupt_byteorder_record])
def test_damaged_checkpoint_inside_an_intact_zip_is_bad_checkpoint(official_folder, damage):
    (official_folder / "latest.ckpt").write_bytes(damage())
    with pytest.raises(HyMotionError) as caught:
        load_model_folder(official_folder)
    assert caught.value.code == BAD_CHECKPOINT


UNPICKLED: list[str] = []


def record_unpickling(label: str) -> str:
    UNPICKLED.append(label)
    return label


class SmuggledObject:
    """Runs code when unpickled (what a malicious checkpoint would do)."""

    def __reduce__(self):
        return record_unpickling, ("code ran",)


def test_checkpoint_with_a_pickled_object_is_refused_without_running_it(official_folder, source):
    model, pipeline = source
    state = {DIT_PREFIX + key: value for key, value in model.state_dict().items()} | pipeline
    torch.save({"model_state_dict": state, "payload": SmuggledObject()}, official_folder / "latest.ckpt")
    UNPICKLED.clear()
    with pytest.raises(HyMotionError, match="weights-only") as caught:
        load_model_folder(official_folder)
    assert caught.value.code == BAD_CHECKPOINT
    assert UNPICKLED == []
    torch.load(official_folder / "latest.ckpt", weights_only=False)  # proof that the payload is live
    assert UNPICKLED == ["code ran"]


def test_converted_safetensors_round_trip(official_folder, source, tmp_path):
    loaded = load_model_folder(official_folder)
    converted = save_converted(loaded, tmp_path / "converted")
    assert (converted / "transformer" / "config.json").is_file()
    assert list((converted / "transformer").glob("*.safetensors"))
    assert (converted / "conditioning.safetensors").is_file()
    again = load_model_folder(converted)
    assert_same_model(again, *source)
    assert again.settings == loaded.settings


def test_convert_command_turns_an_official_folder_into_safetensors(official_folder, source, tmp_path, capsys):
    destination = tmp_path / "converted"
    assert main(["convert", str(official_folder), str(destination)]) == 0
    assert "converted" in capsys.readouterr().out
    assert_same_model(load_model_folder(destination), *source)


def test_convert_command_on_a_broken_folder_exits_2_without_traceback(official_folder, tmp_path, capsys):
    (official_folder / "latest.ckpt").write_text(LFS_POINTER)
    assert main(["convert", str(official_folder), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "hint:" in err and "Traceback" not in err
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "config.yml" in capsys.readouterr().err


def test_damaged_converted_folder_is_bad_checkpoint(official_folder, tmp_path):
    converted = save_converted(load_model_folder(official_folder), tmp_path / "converted")
    weights = next((converted / "transformer").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(HyMotionError) as caught:
        load_model_folder(converted)
    assert caught.value.code == BAD_CHECKPOINT


@pytest.mark.parametrize("width, variant", [(1024, "lite"), (1280, "standard")])
def test_a_folders_variant_is_read_from_either_layouts_config_without_loading_it(tmp_path, width, variant):
    from hymotion.weights import folder_variant

    converted = tmp_path / "converted"
    (converted / "transformer").mkdir(parents=True)
    (converted / "transformer" / "config.json").write_text(f'{{"feat_dim": {width}}}')
    official = tmp_path / "official"
    official.mkdir()
    (official / "config.yml").write_text(yaml.safe_dump({"network_module_args": {"feat_dim": width}}))
    assert folder_variant(converted) == folder_variant(official) == variant


def test_an_unreadable_config_reads_as_lite_and_is_left_to_the_loader_to_report(tmp_path):
    from hymotion.weights import folder_variant

    (tmp_path / "config.yml").write_text("network_module_args: [not, a, mapping")
    assert folder_variant(tmp_path) == "lite"
    assert folder_variant(tmp_path / "missing") == "lite"
