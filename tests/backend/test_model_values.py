"""Values inside model files are checked before they are used (issue 30, point 3): statistics of the wrong length,
absurd or mistyped pipeline settings, NaN in the statistics or the weights end as one ``bad_checkpoint`` naming the
tensor or the key, on every path (loading, ``hymotion generate --model FOLDER``, the service, ``hymotion convert``,
which then writes nothing); no bad_checkpoint message passes on torch's advice to load with weights_only=False."""

from __future__ import annotations

import io
import json

import pytest
import torch
import yaml
from test_loading import SmuggledObject, official_config, tiny_source, write_official_folder

from hymotion.cli import main
from hymotion.model.loading import DIT_PREFIX, load_model_folder, save_converted
from hymotion.service import Connection, ServeOptions, Service
from hymotion.shared.errors import BAD_CHECKPOINT, HyMotionError
from hymotion.shared.protocol import ErrorEvent, decode_event


@pytest.fixture
def source():
    return tiny_source()


def refusal(folder) -> HyMotionError:
    with pytest.raises(HyMotionError) as caught:
        load_model_folder(folder)
    assert caught.value.code == BAD_CHECKPOINT, caught.value
    assert "weights_only" not in caught.value.message + caught.value.hint
    return caught.value


def with_pipeline_tensor(pipeline, key, value):
    return {**pipeline, key: value}


@pytest.mark.parametrize("key, value, words", [
    ("mean", torch.zeros(200), "'mean' holds 200 numbers"),
    ("std", torch.ones(3, 201), "'std' holds 603 numbers"),
    ("std", torch.full((201,), float("nan")), "'std' holds 201 NaN"),
    ("null_ctxt_input", torch.full((1, 1, 24), float("inf")), "'null_ctxt_input' holds 24 NaN or infinite"),
])
def test_bad_pipeline_tensors_are_bad_checkpoint_naming_the_tensor(tmp_path, source, key, value, words):
    model, pipeline = source
    folder = write_official_folder(tmp_path / "m", model, with_pipeline_tensor(pipeline, key, value))
    assert words in refusal(folder).message


def test_nan_in_a_weight_is_bad_checkpoint_naming_the_weight(tmp_path, source):
    model, pipeline = source
    model = type(model)(**model.config)
    model.load_state_dict(source[0].state_dict())
    with torch.no_grad():
        model.final_layer.linear.weight[0, 0] = float("nan")
    folder = write_official_folder(tmp_path / "m", model, pipeline)
    assert f"'{DIT_PREFIX}final_layer.linear.weight' holds 1 NaN" in refusal(folder).message


@pytest.mark.parametrize("value, words", [(10**12, "train_frames = 1000000000000"), ("360", "train_frames = '360'")])
def test_absurd_or_mistyped_train_frames_in_the_official_config_is_bad_checkpoint(tmp_path, source, value, words):
    config = official_config()
    config["train_pipeline_args"]["train_frames"] = value
    folder = write_official_folder(tmp_path / "m", source[0], source[1], config=config)
    assert words in refusal(folder).message


@pytest.mark.parametrize("change, words", [
    ({"train_frames": 10**12}, "train_frames = 1000000000000"),
    ({"train_frames": "360"}, "train_frames = '360'"),
    ({"steps": 0}, "steps = 0"),
    ({"cfg_scale": float("nan")}, "cfg_scale = nan"),
    ({"max_text_tokens": 10**9}, "max_text_tokens"),
    ({"unknown": 1}, "unknown = 1 is not a setting"),
])
def test_bad_values_in_a_converted_pipeline_json_are_bad_checkpoint(tmp_path, source, change, words):
    converted = save_converted(load_model_folder(write_official_folder(tmp_path / "m", *source)), tmp_path / "c")
    path = converted / "pipeline.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    message = refusal(converted).message
    assert words in message and "pipeline.json" in message


def test_nan_in_converted_statistics_is_bad_checkpoint(tmp_path, source):
    from safetensors.torch import load_file, save_file

    converted = save_converted(load_model_folder(write_official_folder(tmp_path / "m", *source)), tmp_path / "c")
    tensors = load_file(converted / "conditioning.safetensors")
    tensors["std"][5] = float("nan")
    save_file(tensors, converted / "conditioning.safetensors")
    assert "'std' holds 1 NaN" in refusal(converted).message


def test_convert_refuses_an_official_folder_with_nan_statistics_and_writes_nothing(tmp_path, source, capsys):
    model, pipeline = source
    not_a_number = torch.full((201,), float("nan"))
    folder = write_official_folder(tmp_path / "m", model, with_pipeline_tensor(pipeline, "std", not_a_number))
    assert main(["convert", str(folder), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'std' holds 201 NaN" in err and "hint:" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_generate_with_a_model_folder_of_bad_values_exits_2_naming_the_key(tmp_path, source, capsys):
    config = official_config()
    config["train_pipeline_args"]["train_frames"] = "360"
    folder = write_official_folder(tmp_path / "HY-Motion-1.0-Lite", source[0], source[1], config=config)
    out = tmp_path / "x.npz"
    code = main(["generate", "--model", str(folder), "a person walks", "--duration", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "train_frames = '360'" in err and "Traceback" not in err
    assert not out.exists()


def test_the_service_ends_the_job_with_bad_checkpoint_naming_the_tensor(tmp_path, source):
    model, pipeline = source
    folder = write_official_folder(tmp_path / "HY-Motion-1.0-Lite", model,
                                   with_pipeline_tensor(pipeline, "mean", torch.zeros(7)))
    service = Service(ServeOptions(model=str(folder), device="cpu", plan="cpu"))
    sink = io.BytesIO()
    sink.close = lambda: None  # type: ignore[method-assign]
    connection = Connection("test", sink)
    service.start()
    try:
        service.handle_line(connection, b'{"type": "generate", "id": "j", "prompts": ["a person walks"]}\n')
        for _ in range(600):
            events = [decode_event(line) for line in sink.getvalue().splitlines()]
            if events and events[-1].TYPE == "error":
                break
            service.stop_requested.wait(0.1)
    finally:
        service.stop()
        connection.close(timeout=5)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.TYPE, error.code, error.job) == ("error", BAD_CHECKPOINT, "j")
    assert "'mean' holds 7 numbers" in error.message


def test_a_checkpoint_that_needs_unpickling_is_refused_without_torchs_weights_only_advice(tmp_path, source):
    model, pipeline = source
    folder = write_official_folder(tmp_path / "m", model, pipeline)
    state = {DIT_PREFIX + key: value for key, value in model.state_dict().items()} | pipeline
    torch.save({"model_state_dict": state, "payload": SmuggledObject()}, folder / "latest.ckpt")
    message = refusal(folder).message
    assert "weights-only" in message and "weights_only" not in message


def test_a_config_section_that_is_not_a_mapping_is_bad_checkpoint(tmp_path, source):
    config = official_config()
    config["train_pipeline_args"]["test_cfg"] = [1, 2]
    folder = write_official_folder(tmp_path / "m", *source)
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    assert "test_cfg must be a mapping" in refusal(folder).message
