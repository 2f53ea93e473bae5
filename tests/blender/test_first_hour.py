"""Issue 26, "the first hour in a real Blender window": what an animator meets from the install to the first
Actions, each point checked in real bpy (the label widths are in test_text_fit.py)."""

from __future__ import annotations

from types import SimpleNamespace

import bpy
import pytest
from e2e_helpers import (
    RecordingLayout,
    addon_module,
    addon_preferences,
    extension,  # noqa: F401  (fixture)
    ui_scene,  # noqa: F401  (fixture)
)

from hymotion.shared.errors import HyMotionError


@pytest.fixture
def scene(ui_scene):
    return ui_scene


def finished_run(scene, error: HyMotionError | None = None):
    generation, preferences = addon_module("scene.generation"), addon_module("ui.preferences")
    spec = generation.RunSpec([generation.Clip("a person waves", 2.0)], seeds=[0], cfg=5.0, steps=10, smoothing=True)
    run = generation.Run(spec, preferences.backend_config(), scene, scene.collection)
    run._finish(error)
    return run


# --- point 1: the result line ---------------------------------------------------------------------------------------


def test_a_finished_runs_summary_keeps_the_time_it_took(scene, monkeypatch):
    generation = addon_module("scene.generation")
    clock = [100.0]
    monkeypatch.setattr(generation.time, "monotonic", lambda: clock[0])
    spec = generation.RunSpec([generation.Clip("a person waves", 2.0)], seeds=[0], cfg=5.0, steps=10, smoothing=True)
    run = generation.Run(spec, addon_module("ui.preferences").backend_config(), scene, scene.collection)
    run.started_at = 100.0  # (its default factory is the real clock, bound when the class was made)
    clock[0] = 128.7
    run._finish(None)
    first = run.summary()
    clock[0] = 200.0
    assert run.summary() == first and "28.7 s" in first


def test_a_run_that_made_nothing_says_so_instead_of_after_0_of_1(scene):
    error = HyMotionError("model_missing", "The weights are missing.", "Press Download Weights.")
    summary = finished_run(scene, error).summary()
    assert "after 0" not in summary and summary.startswith("HY-Motion made nothing: The weights are missing.")


# --- points 4-6, 8, 10, 20: the preferences and the panels say what is true now -------------------------------------


def preferences_layout() -> RecordingLayout:
    layout = RecordingLayout()
    addon_module("ui.preferences").draw_preferences(layout, addon_preferences())
    return layout


def test_with_a_working_backend_python_the_preferences_stop_asking_for_one(scene):
    text = preferences_layout().text().split("Weights and Licences")[0]  # the Backend box (the tests' Python works)
    assert "Runs with" in text
    assert "set Backend Python" not in text and "online access is off" not in text and "PyTorch: " not in text
    assert "Reinstall Backend" in [call[2] for call in preferences_layout().calls if call[0] == "operator"]


def test_a_closed_installation_options_toggle_hides_every_pytorch_field(scene):
    addon_preferences().backend_python = ""
    addon_preferences().torch_build = "CPU"
    drawn = {call[1] for call in preferences_layout().calls if call[0] == "prop"}
    assert not drawn & {"torch_build", "torch_cpu_index_url", "torch_cuda_index_url", "base_python", "extra_pip_args"}
    addon_preferences().show_setup_options = True
    drawn = {call[1] for call in preferences_layout().calls if call[0] == "prop"}
    assert {"torch_build", "torch_cpu_index_url", "torch_cuda_index_url"} <= drawn


def test_section_headers_do_not_use_a_checkbox_icon(scene):
    icons = {text: icon for kind, text, icon, _ in preferences_layout().placed if kind == "label"}
    assert icons["Doctor"] not in ("CHECKBOX_HLT", "CHECKBOX_DEHLT", "VIEWZOOM")  # (VIEWZOOM: its button's)


def test_the_backend_sub_panel_hides_until_there_is_a_backend(scene):
    panel = addon_module("ui.panels").HYMOTION_PT_backend
    assert panel.poll(bpy.context)
    addon_preferences().backend_python = ""
    assert not panel.poll(bpy.context)
    layout = RecordingLayout()
    addon_module("ui.panels").draw_main(layout, bpy.context)
    assert layout.operators().count("preferences.addon_show") == 1


def test_the_prompt_and_the_preset_name_have_labels_and_generate_waits_for_a_backend(scene):
    panels = addon_module("ui.panels")
    layout = RecordingLayout()
    panels.draw_main(layout, bpy.context)
    texts = [call for call in layout.calls if call[0] in ("label", "prop")]
    assert texts[texts.index(("prop", "prompt")) - 1] == ("label", "Prompt:", "NONE")
    assert "hymotion.generate" not in layout.disabled
    layout = RecordingLayout()
    panels.draw_presets(layout, bpy.context)
    assert "Save the settings as:" in layout.texts()
    addon_preferences().backend_python = ""
    layout = RecordingLayout()
    panels.draw_main(layout, bpy.context)
    assert "hymotion.generate" in layout.disabled


def test_an_empty_mapping_list_says_what_to_press(scene):
    layout = RecordingLayout()
    addon_module("ui.retarget_ui").HYMOTION_PT_retarget.draw(SimpleNamespace(layout=layout), bpy.context)
    assert "press Detect Mapping" in layout.text()
    assert layout.use_property_split  # labels left of their fields, as in Settings: no 'Root Mo…', 'Export …'


def test_download_weights_greyed_out_says_why(scene):
    addon_preferences().model = "tiny-random"
    layout = preferences_layout()
    assert "hymotion.download_weights" in layout.disabled and "The Tiny model needs no download" in layout.text()
    addon_preferences().model = "lite"
    assert "Tick 'I have read and accept these licences'" in preferences_layout().text()


def test_generate_after_a_failed_install_points_at_the_failure_and_its_log(scene, tmp_path):
    setup, preferences = addon_module("core.backend_setup"), addon_module("ui.preferences")
    log = tmp_path / "install.log"
    log.write_text("pip said no\n")
    setup.write_install_record(preferences.user_dir(), setup.InstallRecord(
        setup.FAILED, "Installing PyTorch (CPU build) failed: pip ended with exit code 1.", str(tmp_path / "venv"),
        str(log)))
    addon_preferences().backend_python = ""
    try:
        with pytest.raises(RuntimeError, match="(?s)the last install failed .*Installing PyTorch.*Open Install Log"):
            bpy.ops.hymotion.generate(prompt="a person waves")
    finally:
        (preferences.user_dir() / setup.INSTALL_STATE_FILE).unlink()


# --- point 7: the Timeline's own prompt list -------------------------------------------------------------------------


def test_the_timeline_list_is_its_own_setting_with_a_label(scene):
    settings = scene.hymotion
    settings.timeline_source = "FILE"
    assert settings.batch_source == "TEXT"
    layout = RecordingLayout()
    addon_module("ui.sequence_ops").draw_sequence(layout, bpy.context)
    assert ("prop", "timeline_file") in layout.calls and ("prop", "batch_source") not in layout.calls
    assert "Timeline:" in layout.text()
    icons = {text: icon for kind, text, icon, _ in layout.placed if kind == "operator"}
    assert icons["hymotion.generate_loop"] != icons["hymotion.make_cyclic"]


# --- point 9: Fit Scene Range ----------------------------------------------------------------------------------------


def test_fit_scene_range_covers_the_new_action_and_keeps_the_frame_rate(scene):
    rig = addon_module("scene.rig").build_armature(bpy.context)
    scene.frame_start, scene.frame_end = 1, 250
    fps = (scene.render.fps, scene.render.fps_base)
    action = bpy.data.actions.new("HYM_test")
    rig.animation_data_create().action = action
    rig.pose.bones[0].keyframe_insert("location", frame=1)
    rig.pose.bones[0].keyframe_insert("location", frame=120)
    assert scene.hymotion.fit_scene_range, "on by default: Play in a fresh scene shows the motion, nothing after it"
    assert addon_module("scene.scene_range").fit_scene_range(scene, rig, [rig.animation_data.action]) == (1, 120)
    assert (scene.frame_start, scene.frame_end) == (1, 120) and (scene.render.fps, scene.render.fps_base) == fps
    layout = RecordingLayout()
    addon_module("ui.panels").draw_target(layout, bpy.context)
    assert ("prop", "fit_scene_range") in layout.calls


# --- point 19: a Rigify metarig is not a retarget target -------------------------------------------------------------


def test_a_rigify_metarig_as_retarget_target_is_refused_pointing_at_the_generated_rig(scene):
    import addon_utils

    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    metarig = bpy.context.active_object
    source = addon_module("scene.rig").build_armature(bpy.context)
    settings = scene.hymotion_retarget
    settings.source_armature, settings.target_armature = source, metarig
    with pytest.raises(RuntimeError, match="(?s)is a Rigify metarig.*Generate Rig"):
        bpy.ops.hymotion.detect_bone_mapping()
    layout = RecordingLayout()
    addon_module("ui.retarget_ui").HYMOTION_PT_retarget.draw(SimpleNamespace(layout=layout), bpy.context)
    assert "A Rigify metarig moves nothing." in layout.text()
    generated = bpy.data.objects.new("RIG-metarig", bpy.data.armatures.new("RIG-metarig"))
    if hasattr(metarig.data, "rigify_target_rig"):
        metarig.data.rigify_target_rig = generated
        assert "'RIG-metarig'" in addon_module("scene.target_rig").metarig_hint(metarig)


# --- point 11: PyTorch's index fields -----------------------------------------------------------------------------


def test_the_pytorch_index_fields_default_to_pytorchs_own_and_clean_a_pasted_command(scene):
    sources = addon_module("core.package_sources")
    preferences = addon_preferences()
    assert preferences.torch_cpu_index_url == sources.PYTORCH_CPU_INDEX
    assert preferences.torch_cuda_index_url == sources.PYTORCH_CUDA_INDEX
    preferences.torch_cpu_index_url = "pip3 install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    assert preferences.torch_cpu_index_url == "https://download.pytorch.org/whl/cpu"
    preferences.torch_cpu_index_url = "pytorch cpu"
    preferences.backend_python, preferences.torch_build = "", "CPU"
    with pytest.raises(RuntimeError, match="(?s)PyTorch CPU Index holds a command without --index-url.*Paste"):
        bpy.ops.hymotion.install_backend()
    assert "holds a command without --index-url" in preferences_layout().text()


# --- point 20: the smaller ones --------------------------------------------------------------------------------------


def test_the_built_in_preset_after_a_user_preset_brings_back_the_default_bake_options(scene):
    settings = scene.hymotion
    settings.in_place, settings.fps_mode, settings.nla_layout, settings.start_frame = True, "SET_SCENE_FPS", "STACK", 9
    assert bpy.ops.hymotion.preset_save(name="Odd bake") == {"FINISHED"}
    try:
        assert bpy.ops.hymotion.preset_load(name="Official") == {"FINISHED"}
        assert (settings.in_place, settings.fps_mode, settings.nla_layout, settings.start_frame) == (
            False, "RESAMPLE", "SEQUENCE", 1)
    finally:
        bpy.ops.hymotion.preset_delete(name="Odd bake")


def test_target_active_with_nothing_selected_says_nothing_is_selected(scene):
    bpy.context.view_layer.objects.active = None
    with pytest.raises(RuntimeError, match="No object is selected"):
        bpy.ops.hymotion.generate(prompt="a person waves", target="ACTIVE")


# --- points 12, 14: weights in Blender's words -----------------------------------------------------------------------


def test_a_run_without_weights_names_download_weights_not_a_command(scene):
    error = HyMotionError("weights_missing", "HY-Motion lite is not downloaded.", "Run: hymotion download --variant "
                          "lite")
    summary = finished_run(scene, error).summary()
    assert "Download Weights" in summary and "Model Folder" in summary and "hymotion download" not in summary


def test_a_model_folder_at_the_lite_folder_itself_is_used_through_its_parent(scene, tmp_path):
    lite = tmp_path / "weights" / "HY-Motion-1.0-Lite"
    lite.mkdir(parents=True)
    addon_preferences().model_dir = str(lite)
    assert addon_module("ui.preferences").backend_config().model_dir == str(tmp_path / "weights")
    assert "is the HY-Motion-1.0-Lite folder itself" in preferences_layout().text()


# --- point 16: new armatures can be told apart ----------------------------------------------------------------------


def test_each_new_armature_is_named_after_its_prompt_and_stands_beside_the_others(scene):
    generation, preferences = addon_module("scene.generation"), addon_module("ui.preferences")
    made = []
    for prompts in (["a person jumps twice"], ["a person waves"], ["a person sits", "a person stands up"]):
        spec = generation.RunSpec([generation.Clip(prompt, 2.0) for prompt in prompts], seeds=[0], cfg=5.0,
                                  steps=10, smoothing=True)
        run = generation.Run(spec, preferences.backend_config(), scene, scene.collection)
        made.append(run._target_armature())
    assert [armature.name for armature in made] == ["SMPLX_jumps_twice", "SMPLX_waves", "SMPLX_batch"]
    xs = [armature.location.x for armature in made]
    assert xs[0] == 0.0 and xs[1] - xs[0] >= 1.7 and xs[2] - xs[1] >= 1.7  # more than the T-pose arm span
