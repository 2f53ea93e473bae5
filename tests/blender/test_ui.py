"""The add-on's UI without the model: panels and preferences draw in every backend state, operators refuse bad input
with a clear report, presets and history round-trip, and the backend set-up tasks run, log and fail clearly."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import bpy
import pytest
from e2e_helpers import (
    RecordingLayout,
    addon_module,
    addon_preferences,
    clear_scene,
    configure_preferences,
    extension,  # noqa: F401  (fixture)
)

from hymotion.shared import jobs
from hymotion.shared.errors import HyMotionError
from hymotion.shared.presets import BUILTIN_PRESETS, SCHEMA, GenerationPreset, PresetStore
from hymotion.shared.protocol import ProgressEvent

MISSING_PYTHON = "/nonexistent/hymotion/python"


@pytest.fixture
def scene(extension):
    scene = clear_scene()
    yield scene
    generation = addon_module("scene.generation")
    generation.active_run = None
    addon_module("core.backend_manager").MANAGER.shutdown()
    configure_preferences()


def draw_panels(context=None) -> RecordingLayout:
    panels = addon_module("ui.panels")
    layout = RecordingLayout()
    context = context or bpy.context
    for draw in (panels.draw_main, panels.draw_settings, panels.draw_target, panels.draw_batch, panels.draw_presets,
                 panels.draw_history):
        draw(layout, context)
    panels.draw_backend_state(layout, context, detailed=True)
    return layout


# --- panels ---------------------------------------------------------------------------------------------------------


def test_every_panel_polls_true_in_a_scene_and_lives_in_the_sidebar_tab(scene):
    panels = addon_module("ui.panels")
    panel_classes = [cls for cls in panels.classes if issubclass(cls, bpy.types.Panel)]
    assert {cls.__name__ for cls in panel_classes} >= {"HYMOTION_PT_main", "HYMOTION_PT_history"}
    for cls in panel_classes:
        assert cls.is_registered and cls.poll(bpy.context)
        assert (cls.bl_space_type, cls.bl_region_type, cls.bl_category) == ("VIEW_3D", "UI", "HY-Motion")


def test_panels_say_the_backend_is_not_installed_and_point_at_the_preferences(scene):
    addon_preferences().backend_python = ""
    layout = draw_panels()
    assert "Backend: not installed" in layout.texts()
    assert "preferences.addon_show" in layout.operators()


def test_panels_draw_a_backend_that_has_not_started_yet(scene):
    layout = draw_panels()
    assert "Backend: starts at the first Generate (tiny-random, plan cpu)" in layout.text()
    assert "Tiny test model: motion is noise." in layout.texts()
    assert {"hymotion.generate", "hymotion.batch_bake", "HYMOTION_MT_preset_load", "hymotion.preset_save",
            "hymotion.history_use", "hymotion.stop_backend"} <= set(layout.operators())


def test_a_backend_that_cannot_start_shows_as_an_error_with_its_reason(scene):
    addon_preferences().backend_python = MISSING_PYTHON
    with pytest.raises(RuntimeError, match=f"Cannot start the backend with {MISSING_PYTHON}"):
        bpy.ops.hymotion.generate(prompt="a person waves")
    assert not [obj for obj in bpy.data.objects]
    text = draw_panels().text()
    assert "Backend: error" in text and MISSING_PYTHON in text and "preferences" in text


def test_a_running_generation_shows_progress_and_a_cancel_button(scene):
    generation = addon_module("scene.generation")
    preferences = addon_module("ui.preferences")
    spec = generation.RunSpec([generation.Clip("a person waves", 2.0)], seeds=[0, 1], cfg=5.0, steps=10,
                              smoothing=True)
    run = generation.Run(spec, preferences.backend_config(), scene, scene.collection)
    run.job = "job-1"
    run._handle([ProgressEvent(job="job-1", stage="sampling", step=5, total=10)])
    generation.active_run = run

    layout = draw_panels()

    assert "Backend: busy" in layout.texts()
    progress = [call for call in layout.calls if call[0] == "progress"]
    assert progress and progress[0][1] == pytest.approx(0.15 + 0.85 * 0.5)
    assert "Sampling 5/10 · 0/2 clips" in progress[0][2]
    assert "hymotion.cancel" in layout.operators() and "hymotion.generate" not in layout.operators()


def test_prompt_guidance_shows_words_warnings_and_the_auto_duration(scene):
    scene.hymotion.prompt = "two people dance together in a park"
    texts = draw_panels().texts()
    assert any("words (best under 60" in text for text in texts)
    assert any(text.startswith("The model animates one person") for text in texts)
    assert any(text.startswith("Duration (auto): 1 action (dance)") for text in texts)
    scene.hymotion.duration = 4.0
    assert not any(text.startswith("Duration (auto)") for text in draw_panels().texts())


def test_the_target_panel_says_whether_the_active_object_can_take_the_motion(scene):
    scene.hymotion.target = "ACTIVE"
    assert "Select an SMPL-X armature made by HY-Motion" in draw_panels().text()
    rig = addon_module("scene.rig").build_armature(bpy.context)
    assert f"Bakes onto '{rig.name}'" in draw_panels().texts()


def test_the_history_list_draws_its_items(scene):
    settings = scene.hymotion
    addon_module("ui.properties").remember(settings, "a person waves", 2.5, "0")
    layout = RecordingLayout()
    panels = addon_module("ui.panels")
    panels.HYMOTION_UL_history.draw_item(None, bpy.context, layout, settings, settings.history[0], 0, settings,
                                         "history_index", 0)
    assert layout.texts() == ["a person waves", "2.5 s"]


def test_the_preferences_draw_with_licences_and_offline_advice(scene):
    preferences = addon_module("ui.preferences")
    layout = RecordingLayout()
    addon_preferences().show_setup_options = True
    preferences.draw_preferences(layout, addon_preferences())
    text = layout.text()
    assert "Tencent Hunyuan Community License" in text and "European" in text and "South Korea" in text
    assert "Apache License 2.0" in text and "MIT License" in text
    assert {"hymotion.install_backend", "hymotion.download_weights", "hymotion.doctor"} <= set(layout.operators())
    if not bpy.app.online_access:
        assert "online access is off" in text


# --- operators refuse bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"prompt": "   "}, "The prompt is empty"),
        ({"prompt": "a person waves", "seeds": "0,x"}, "Seed 'x' is not an integer"),
        ({"prompt": "a person waves", "target": "ACTIVE"}, "No object is selected, and this needs the SMPL-X armature"),
        ({"prompt": "a person waves", "duration": 20.0}, "Duration 20 s is outside"),
    ],
)
def test_generate_reports_bad_input_and_makes_nothing(scene, arguments, message):
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.hymotion.generate(**arguments)
    assert not bpy.data.objects and not bpy.data.actions


def test_panel_and_operators_take_each_generation_setting_from_one_table(scene):
    """Same label, default and lower limit on the panel and on both operators; the panel's upper limit is only the
    operators' slider end, so a script's too-large value reaches the backend's check (see the test above)."""
    settings = addon_module("ui.properties").GENERATION_SETTINGS
    panel = scene.hymotion.bl_rna.properties
    operators = [op.get_rna_type().properties for op in (bpy.ops.hymotion.generate, bpy.ops.hymotion.batch_bake)]
    operator_names = {"batch_source": "source"}
    checked = set()
    for setting in settings:
        for properties in operators:
            prop = properties.get(operator_names.get(setting, setting))
            if prop is None:
                continue
            checked.add(setting)
            expected = panel[setting]
            described = (prop.name, prop.description, prop.default)
            assert described == (expected.name, expected.description, expected.default), setting
            assert prop.is_skip_save, f"{setting}: an operator's value must not be remembered between calls"
            if expected.type in {"FLOAT", "INT"}:
                assert (prop.hard_min, prop.soft_min) == (expected.hard_min, expected.soft_min), setting
                assert prop.soft_max == min(expected.soft_max, expected.hard_max), setting
                unbounded = {"INT": 2**31 - 1, "FLOAT": 3.4028234663852886e38}[expected.type]  # bpy's defaults
                assert prop.hard_max == pytest.approx(unbounded), f"{setting}: an operator would clamp silently"
    assert checked == set(settings)
    assert (scene.hymotion.cfg, scene.hymotion.steps) == (jobs.DEFAULT_CFG, jobs.DEFAULT_STEPS)
    assert panel["duration"].hard_max == pytest.approx(jobs.MAX_DURATION)


def test_generate_without_a_backend_says_how_to_install_it(scene):
    addon_preferences().backend_python = ""
    with pytest.raises(RuntimeError, match="(?s)backend is not installed.*Install Backend"):
        bpy.ops.hymotion.generate(prompt="a person waves")


def test_batch_bake_needs_a_prompt_list(scene):
    with pytest.raises(RuntimeError, match="No text datablock is chosen"):
        bpy.ops.hymotion.batch_bake(source="TEXT")
    with pytest.raises(RuntimeError, match="Cannot read the prompt file"):
        bpy.ops.hymotion.batch_bake(source="FILE", filepath="/nonexistent/prompts.txt")


# --- presets and history --------------------------------------------------------------------------------------------


def preset_menu_entries(menu_name: str) -> list[str]:
    """The entries a preset menu draws (its draw method, called with a recording layout)."""
    menu = getattr(addon_module("ui.operators"), menu_name)
    layout = RecordingLayout()
    menu.draw(SimpleNamespace(layout=layout, operator=menu.operator, user_presets_only=menu.user_presets_only),
              bpy.context)
    return [call[2] for call in layout.calls if call[0] == "operator"]


def test_presets_save_and_load_the_panel_settings(scene):
    settings = scene.hymotion
    settings.duration, settings.seeds, settings.steps, settings.cfg = 5.5, "0-2", 30, 3.5
    settings.in_place, settings.fps_mode, settings.nla_layout = True, "SET_SCENE_FPS", "STACK"
    assert bpy.ops.hymotion.preset_save(name="Slow walks") == {"FINISHED"}
    for name in ("duration", "seeds", "steps", "cfg", "in_place", "fps_mode", "nla_layout"):
        settings.property_unset(name)

    assert preset_menu_entries("HYMOTION_MT_preset_load") == [*BUILTIN_PRESETS, "Slow walks"]
    assert preset_menu_entries("HYMOTION_MT_preset_delete") == ["Slow walks"]
    assert bpy.ops.hymotion.preset_load(name="Slow walks") == {"FINISHED"}

    assert (settings.duration, settings.seeds, settings.steps, settings.cfg) == (5.5, "0-2", 30, 3.5)
    assert (settings.in_place, settings.fps_mode, settings.nla_layout) == (True, "SET_SCENE_FPS", "STACK")
    stored = json.loads(addon_module("ui.preferences").presets_path().read_text())
    assert stored["schema"] == SCHEMA and stored["presets"]["Slow walks"]["steps"] == 30
    assert bpy.ops.hymotion.preset_load(name="Quick draft") == {"FINISHED"}
    assert settings.steps == BUILTIN_PRESETS["Quick draft"].steps
    assert bpy.ops.hymotion.preset_delete(name="Slow walks") == {"FINISHED"}
    assert "Slow walks" not in PresetStore(addon_module("ui.preferences").presets_path()).names()


def test_presets_refuse_bad_names_and_builtins(scene):
    with pytest.raises(RuntimeError, match="The preset has no name"):
        bpy.ops.hymotion.preset_save(name=" ")
    with pytest.raises(RuntimeError, match="'Official' is a built-in preset"):
        bpy.ops.hymotion.preset_save(name="Official")
    with pytest.raises(RuntimeError, match="cannot be deleted"):
        bpy.ops.hymotion.preset_delete(name="Official")


def test_a_damaged_preset_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "presets.json"
    path.write_text("{not json")
    with pytest.raises(HyMotionError, match="Cannot read the preset file") as raised:
        PresetStore(path).names()
    assert str(path) in raised.value.message
    path.write_text(json.dumps({"schema": SCHEMA, "presets": {"bad": {"steps": 0}, "new": {"future_key": 1}}}))
    with pytest.raises(HyMotionError, match="preset 'bad'.*steps must be an integer >= 1"):
        PresetStore(path).get("bad")
    assert PresetStore(path).get("new") == GenerationPreset()


def test_history_keeps_recent_prompts_once_newest_first(scene):
    settings = scene.hymotion
    for index in range(25):
        addon_module("ui.properties").remember(settings, f"a person walks {index} steps", 0.0, "0")
    addon_module("ui.properties").remember(settings, "a person walks 20 steps", 3.0, "1")
    prompts = [item.prompt for item in settings.history]
    assert len(prompts) == 20 and prompts[0] == "a person walks 20 steps" and prompts.count(prompts[0]) == 1
    settings.history_index = 1
    assert bpy.ops.hymotion.history_use() == {"FINISHED"}
    assert settings.prompt == "a person walks 24 steps"
    assert bpy.ops.hymotion.history_clear() == {"FINISHED"} and len(settings.history) == 0


# --- backend set-up -------------------------------------------------------------------------------------------------


def test_install_steps_pick_the_torch_build_and_the_package(tmp_path):
    setup = addon_module("core.backend_setup")
    sources = addon_module("core.package_sources")
    cuda = sources.choose_torch_build("Windows", "NVIDIA driver found", cuda_index_url=" https://example.invalid/cuda ")
    steps = setup.install_steps("/usr/bin/python3", tmp_path / "env", tmp_path / "backend", cuda,
                                extra_pip_args=["--no-index"])
    venv_python = str(setup.venv_python(tmp_path / "env"))
    assert steps[0].command == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "env")]
    assert steps[1].command[:3] == [venv_python, "-m", "pip"] and "--no-index" in steps[1].command
    assert steps[1].command[-3:] == ["torch", "--index-url", "https://example.invalid/cuda"]
    assert steps[1].label == "Installing PyTorch (CUDA build)"
    assert steps[2].command[-1] == f"{(tmp_path / 'backend').resolve()}[doctor]"
    assert steps[-1].command[:2] == [venv_python, "-c"] and "import torch" in steps[-1].command[2]
    linux_cpu = sources.choose_torch_build("Linux", "")
    plain = setup.install_steps("python3", tmp_path / "env", tmp_path / "backend", linux_cpu)
    assert plain[1].command[-1] == "torch" and plain[2].command[-1] == str((tmp_path / "backend").resolve())


def test_the_package_source_is_the_checkout_else_the_newest_wheel(tmp_path):
    setup = addon_module("core.backend_setup")
    assert setup.backend_package_source(tmp_path) is None
    (tmp_path / "wheels").mkdir()
    wheel = tmp_path / "wheels" / "hymotion-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert setup.backend_package_source(tmp_path) == wheel
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "pyproject.toml").write_text("")
    assert setup.backend_package_source(tmp_path) == tmp_path / "backend"


def test_a_setup_task_logs_every_step_and_keeps_a_json_answer_apart(tmp_path):
    setup = addon_module("core.backend_setup")
    steps = [
        setup.Step("Say hello", [sys.executable, "-c", "print('hello from step one')"]),
        setup.Step("Answer", [sys.executable, "-c", "import sys; print('{\"report_text\": \"all good\"}');"
                              "print('noise', file=sys.stderr); sys.exit(1)"], ok_exit_codes=(0, 1),
                   capture_stdout=True),
    ]
    task = setup.CommandTask("doctor", "Checking", steps, tmp_path / "logs" / "doctor.log").start()
    assert task.wait(60) and task.succeeded, task.message
    assert task.fraction == 1.0
    assert setup.doctor_report_text(task.stdout) == "all good"
    output = [line for line in task.log_path.read_text().splitlines() if not line.startswith(("----", "===="))]
    assert "hello from step one" in output and "noise" in output
    assert not [line for line in output if "report_text" in line]


def test_a_failing_setup_step_says_which_step_how_and_where_the_log_is(tmp_path):
    setup = addon_module("core.backend_setup")
    steps = [setup.Step("Installing PyTorch", [sys.executable, "-c", "raise SystemExit('no torch wheel here')"]),
             setup.Step("Never reached", [sys.executable, "-c", "pass"])]
    task = setup.CommandTask("install", "Installing", steps, tmp_path / "install.log").start()
    assert task.wait(60) and task.succeeded is False
    assert "Installing PyTorch failed (exit code 1): no torch wheel here" in task.message
    assert str(task.log_path) in task.message and "Never reached" not in task.log_path.read_text()
    missing = setup.CommandTask("x", "X", [setup.Step("Run", [MISSING_PYTHON])], tmp_path / "x.log").start()
    assert missing.wait(60) and "Run could not start" in missing.message


def test_a_cancelled_setup_task_stops_its_command(tmp_path):
    setup = addon_module("core.backend_setup")
    steps = [setup.Step("Waiting", [sys.executable, "-c", "import time; time.sleep(600)"])]
    task = setup.CommandTask("install", "Installing", steps, tmp_path / "install.log").start()
    task.cancel()
    assert task.wait(30) and task.succeeded is False and "cancelled" in task.message


def test_install_backend_refuses_to_download_while_online_access_is_off(scene):
    if bpy.app.online_access:
        pytest.skip("Blender runs with online access here")
    addon_preferences().extra_pip_args = ""
    with pytest.raises(RuntimeError, match="online access is off"):
        bpy.ops.hymotion.install_backend()
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.hymotion.download_weights()


def test_the_doctor_report_shows_in_the_preferences_and_copies_to_the_clipboard(scene):
    setup = addon_module("core.backend_setup")
    assert bpy.ops.hymotion.doctor() == {"FINISHED"}
    task = setup.tasks["doctor"]
    assert task.wait(300) and task.succeeded, task.message
    report = setup.doctor_report()
    assert report.splitlines() and "Python 3." in report
    layout = RecordingLayout()
    addon_module("ui.preferences").draw_preferences(layout, addon_preferences())
    assert report.splitlines()[0] in layout.texts() and "hymotion.copy_doctor_report" in layout.operators()
    assert bpy.ops.hymotion.copy_doctor_report() == {"FINISHED"}  # (background Blender keeps no clipboard)
