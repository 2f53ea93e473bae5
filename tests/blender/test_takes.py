"""Takes (issue 29): several results of one prompt on one rig, to play, solo, compare, accept and reject; carried
over by retargeting; remembered by History. The scene logic runs on hand-baked Actions; Generate, Generate More and
the API run the real backend with the tiny model."""

from __future__ import annotations

import bpy
import numpy as np
import pytest
import retarget_test_rigs as rigs
from e2e_helpers import TEST_STEPS, RecordingLayout, addon_module, clear_scene, extension  # noqa: F401  (fixture)

from hymotion.shared.errors import HyMotionError

PROMPT = "a person waves"


@pytest.fixture
def scene(extension):
    scene = clear_scene(fps=30)
    for collection in list(bpy.data.collections):
        bpy.data.collections.remove(collection)
    return scene


def takes_module():
    return addon_module("scene.takes")


def hand_made_takes(count: int = 3, with_mesh: bool = False, start_frame: int = 1, rig=None):
    """An SMPL-X rig with ``count`` takes of PROMPT (seeds 0..count-1), each a different hand-made clip, baked the
    way a run bakes them."""
    bake, takes = addon_module("scene.bake"), takes_module()
    rig = rig or addon_module("scene.rig").build_armature(bpy.context, with_mesh=with_mesh)
    translation, rotations = rigs.hand_made_clip(12)
    made = []
    for seed in range(count):
        previous = rig.animation_data.action if rig.animation_data else None
        action = bake.bake_motion(rig, translation + [0.1 * seed, 0.0, 0.0], np.roll(rotations, seed, axis=0),
                                  prompt=PROMPT, seed=seed, model="hand-made", start_frame=start_frame)
        takes.add_take(rig, action, previous=previous, made_with={"cfg": 4.0, "steps": TEST_STEPS})
        made.append(action)
    return rig, made


def action_names() -> list[str]:
    return sorted(action.name for action in bpy.data.actions)


# --- what a take is -------------------------------------------------------------------------------------------------


def test_takes_are_listed_in_order_on_their_rig_with_the_newest_shown(scene):
    takes = takes_module()
    rig, made = hand_made_takes(3)

    assert takes.takes_of(rig) == made
    assert [takes.take_label(rig, action) for action in made] == [f"Take {n} · seed {n - 1}" for n in (1, 2, 3)]
    assert takes.shown_take(rig) == made[-1] and all(action.use_fake_user for action in made)
    assert takes.owner_of(made[0]) == rig and takes.recipe(made[0]) == {"cfg": 4.0, "steps": TEST_STEPS}
    assert takes.next_seeds([rig], PROMPT, 2) == [3, 4] and takes.next_seeds([rig], "another prompt", 1) == [0]


def test_play_shows_the_take_and_goes_to_its_first_frame_without_touching_the_scene_range(scene):
    takes = takes_module()
    rig, made = hand_made_takes(2, start_frame=20)
    frame_range = (scene.frame_start, scene.frame_end)

    assert takes.play(rig, made[0], scene) == (20, 31)

    assert rig.animation_data.action == made[0] and scene.frame_current == 20
    assert (scene.frame_start, scene.frame_end) == frame_range
    if "action_slot" in rig.animation_data.bl_rna.properties:
        assert rig.animation_data.action_slot is not None


# --- accept and reject ----------------------------------------------------------------------------------------------


def test_accept_makes_the_take_the_rigs_action_and_removes_the_others(scene):
    takes = takes_module()
    rig, made = hand_made_takes(3)
    names = [action.name for action in made]

    outcome = takes.accept(made[1])

    assert outcome == {"kept": [], "removed": [names[0], names[2]]}
    assert action_names() == [names[1]] and rig.animation_data.action == made[1]
    assert takes.takes_of(rig) == [] and made[1].use_fake_user and made[1]["hymotion_accepted"]


def test_accept_keeps_the_others_with_a_fake_user_when_asked(scene):
    takes = takes_module()
    rig, made = hand_made_takes(3)

    outcome = takes.accept(made[0], rig, keep_others=True)

    assert sorted(outcome["kept"]) == sorted(action.name for action in made[1:]) and outcome["removed"] == []
    assert all(action.use_fake_user for action in made) and takes.takes_of(rig) == []
    assert rig.animation_data.action == made[0]


def test_a_take_something_else_plays_is_kept_not_removed(scene):
    takes = takes_module()
    rig, made = hand_made_takes(2)
    other = bpy.data.objects.new("Other", rig.data)
    scene.collection.objects.link(other)
    other.animation_data_create().action = made[0]

    assert takes.accept(made[1]) == {"kept": [made[0].name], "removed": []}
    assert other.animation_data.action == made[0]


def test_reject_removes_the_take_and_shows_the_next_then_the_action_before_the_takes(scene):
    bake, takes = addon_module("scene.bake"), takes_module()
    rig = addon_module("scene.rig").build_armature(bpy.context)
    translation, rotations = rigs.hand_made_clip(12)
    before = bake.bake_motion(rig, translation, rotations, prompt="a person stands", seed=9)
    rig, made = hand_made_takes(3, rig=rig)
    takes.show(rig, made[1])

    assert takes.reject(made[1]) == "removed"
    assert takes.takes_of(rig) == [made[0], made[2]] and rig.animation_data.action == made[2]
    assert takes.reject(made[2], rig, keep=True) == "kept" and made[2].use_fake_user
    assert takes.reject(made[0]) == "removed"
    assert takes.takes_of(rig) == [] and rig.animation_data.action == before


@pytest.mark.parametrize("which", ["not_a_take", "another_rigs"])
def test_accepting_or_rejecting_what_is_not_this_rigs_take_is_refused_and_changes_nothing(scene, which):
    takes = takes_module()
    rig, made = hand_made_takes(2)
    other_rig, other_made = hand_made_takes(2)
    plain = bpy.data.actions.new("Keyed by hand")
    action, message = {
        "not_a_take": (plain, "'Keyed by hand' is not a take of any rig"),
        "another_rigs": (other_made[0], f"is a take of '{other_rig.name}', not of '{rig.name}'"),
    }[which]
    names, shown = action_names(), rig.animation_data.action

    for call in (lambda: takes.accept(action, rig), lambda: takes.reject(action, rig)):
        with pytest.raises(HyMotionError, match=message) as raised:
            call()
        assert raised.value.code == "bad_request" and raised.value.hint
    assert action_names() == names and rig.animation_data.action == shown
    assert takes.takes_of(rig) == made and takes.takes_of(other_rig) == other_made


# --- compare and solo -----------------------------------------------------------------------------------------------


def test_compare_puts_a_copy_beside_the_rig_for_every_other_take_and_solo_hides_them(scene):
    takes = takes_module()
    rig, made = hand_made_takes(3, with_mesh=True)
    takes.show(rig, made[0])

    copies = takes.compare(rig, scene)

    assert [copy[takes.COMPARE_TAKE_PROPERTY] for copy in copies] == made[1:]
    assert [copy.animation_data.action for copy in copies] == made[1:]
    assert all(copy.data == rig.data and takes.takes_of(copy) == [] for copy in copies)
    xs = [rig.location.x] + [copy.location.x for copy in copies]
    assert xs == sorted(xs) and xs[1] - xs[0] >= takes.MIN_COMPARE_WIDTH
    meshes = [obj for obj in bpy.data.objects if obj.type == "MESH" and obj.parent in copies]
    assert len(meshes) == 2 and all(mesh.modifiers[0].object == mesh.parent for mesh in meshes)
    assert takes.rig_of(copies[0]) == rig and takes.owners(made[1]) == [rig]

    takes.set_solo(rig, made[2], True)
    assert takes.is_solo(rig, made[2]) and rig.animation_data.action == made[2]
    assert all(not obj.visible_get() for obj in bpy.data.objects if takes.COMPARE_PROPERTY in obj)
    takes.set_solo(rig, made[2], False)
    assert all(copy.visible_get() for copy in takes.comparison(rig))

    takes.accept(made[2])
    assert takes.comparison(rig) == [] and [obj for obj in bpy.data.objects if obj.type == "ARMATURE"] == [rig]
    assert takes.COMPARE_COLLECTION not in bpy.data.collections


def test_compare_needs_two_takes(scene):
    rig, _ = hand_made_takes(1)
    with pytest.raises(HyMotionError, match="has 1 take: nothing to compare"):
        takes_module().compare(rig)


# --- retargeted takes -----------------------------------------------------------------------------------------------


def test_retargeted_takes_are_takes_of_the_target_rig_and_accepting_there_keeps_the_source(scene):
    takes, take_runs = takes_module(), addon_module("scene.take_runs")
    source, made = hand_made_takes(3)
    takes.show(source, made[1])
    target = rigs.build_rig("Mixamo", rigs.mixamo_bones())

    retargeted = take_runs.retarget_takes(source, target, feet_cleanup=False)

    assert takes.takes_of(target) == retargeted and [a["hymotion_seed"] for a in retargeted] == [0, 1, 2]
    assert target.animation_data.action == retargeted[1]
    assert all(takes.source_of(target, action) == source for action in retargeted)
    assert takes.recipe(retargeted[0])["retarget"]["options"] == {"feet_cleanup": False}
    assert takes.next_seeds([source, target], PROMPT, 1) == [3]

    takes.accept(retargeted[0])
    assert target.animation_data.action == retargeted[0] and takes.takes_of(target) == []
    assert takes.takes_of(source) == made


def test_generate_more_repeats_the_takes_settings_and_refuses_when_there_is_nothing_to_generate_on(scene):
    take_runs = addon_module("scene.take_runs")
    source, made = hand_made_takes(2, start_frame=7)
    more = take_runs.more_takes(source, 3)
    assert (more.smplx_rig, more.target, more.spec.seeds) == (source, None, [2, 3, 4])
    assert (more.spec.cfg, more.spec.steps, more.spec.start_frame, more.spec.takes) == (4.0, TEST_STEPS, 7, True)
    assert more.spec.clips[0].prompt == PROMPT
    target = rigs.build_rig("Mixamo", rigs.mixamo_bones())
    take_runs.retarget_takes(source, target, feet_cleanup=False)
    bpy.data.objects.remove(source)

    with pytest.raises(HyMotionError, match="retargeted from an SMPL-X rig that is no longer in the file"):
        take_runs.more_takes(target, 1)
    with pytest.raises(HyMotionError, match="has no takes to make more of"):
        take_runs.more_takes(addon_module("scene.rig").build_armature(bpy.context), 1)


def test_retargeting_an_action_that_is_no_take_makes_no_take(scene):
    bake = addon_module("scene.bake")
    source = addon_module("scene.rig").build_armature(bpy.context)
    bake.bake_motion(source, *rigs.hand_made_clip(12), prompt=PROMPT)
    target = rigs.build_rig("Mixamo", rigs.mixamo_bones())

    addon_module("api").retarget_action(source, target)
    assert takes_module().takes_of(target) == []


# --- the panel and its operators ------------------------------------------------------------------------------------


def select(obj) -> None:
    bpy.context.view_layer.objects.active = obj


def test_the_panel_lists_the_active_rigs_takes_and_offers_what_to_do(scene):
    takes_ui = addon_module("ui.takes_ui")
    layout = RecordingLayout()
    takes_ui.draw_takes(layout, bpy.context)
    assert "Generate with several seeds" in layout.text()

    rig, made = hand_made_takes(2)
    select(rig)
    layout = RecordingLayout()
    takes_ui.draw_takes(layout, bpy.context)
    assert f"2 takes on '{rig.name}'" in layout.text()
    assert ("template_list", "HYMOTION_UL_takes") in layout.calls
    assert {"hymotion.take_play", "hymotion.take_compare", "hymotion.take_accept", "hymotion.take_reject",
            "hymotion.take_generate_more"} <= set(layout.operators())
    assert takes_ui.HYMOTION_PT_takes.is_registered and takes_ui.HYMOTION_PT_takes.poll(bpy.context)

    takes_module().set_solo(rig, made[0], True)
    rows = RecordingLayout()
    for item in rig.hymotion_takes.items:  # the list's rows (the UIList's own method; it uses nothing of self)
        takes_ui.HYMOTION_UL_takes.draw_item(None, bpy.context, rows, rig.hymotion_takes, item, "NONE", None, "")
    assert [call for call in rows.calls if call[0] == "label"] == [
        ("label", "Take 1 · seed 0", "HIDE_OFF"), ("label", PROMPT, "NONE"),
        ("label", "Take 2 · seed 1", "DOT"), ("label", PROMPT, "NONE"),
    ]
    assert rows.operators() == ["hymotion.take_play", "hymotion.take_solo"] * 2


def test_the_operators_play_compare_reject_and_accept_the_picked_take_and_history_remembers(scene):
    takes = takes_module()
    rig, made = hand_made_takes(3)
    settings = scene.hymotion
    addon_module("ui.properties").remember(settings, PROMPT, 0.0, "0-2")
    select(rig)
    holder = rig.hymotion_takes

    holder.index = 0
    assert bpy.ops.hymotion.take_play() == {"FINISHED"} and rig.animation_data.action == made[0]
    assert bpy.ops.hymotion.take_compare() == {"FINISHED"} and len(takes.comparison(rig)) == 2
    select(takes.comparison(rig)[0])  # a copy picked in the viewport stands for its rig
    assert bpy.ops.hymotion.take_solo(take=made[0].name) == {"FINISHED"} and takes.is_solo(rig, made[0])
    assert bpy.ops.hymotion.take_reject(take=made[2].name) == {"FINISHED"}
    assert made[0].name in bpy.data.actions and takes.takes_of(rig) == made[:2]
    holder.index = 1
    assert bpy.ops.hymotion.take_accept() == {"FINISHED"}

    assert rig.animation_data.action.name == "HYM_waves_s1" and takes.takes_of(rig) == []
    assert bpy.context.view_layer.objects.active == rig and takes.comparison(rig) == []
    assert action_names() == ["HYM_waves_s1"]
    assert (settings.history[0].prompt, settings.history[0].accepted_seed) == (PROMPT, 1)
    row = RecordingLayout()
    addon_module("ui.panels").HYMOTION_UL_history.draw_item(None, bpy.context, row, settings, settings.history[0],
                                                            "NONE", None, "")
    assert ("label", "seed 1", "CHECKMARK") in row.calls


def test_the_operators_refuse_a_rig_without_takes_and_an_unknown_take(scene):
    rig = addon_module("scene.rig").build_armature(bpy.context)
    select(rig)
    assert not bpy.ops.hymotion.take_accept.poll()
    _, made = hand_made_takes(1, rig=rig)
    with pytest.raises(RuntimeError, match="There is no Action named 'nope'"):
        bpy.ops.hymotion.take_accept(take="nope")
    assert takes_module().takes_of(rig) == made


# --- with the backend -----------------------------------------------------------------------------------------------


def test_generate_with_several_seeds_makes_takes_and_generate_more_adds_new_seeds(scene):
    takes = takes_module()
    result = bpy.ops.hymotion.generate(prompt=PROMPT, duration=1.0, seeds="0,1", steps=TEST_STEPS, start_frame=5)
    assert result == {"FINISHED"}
    (rig,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    first = takes.takes_of(rig)
    assert [action["hymotion_seed"] for action in first] == [0, 1] and takes.shown_take(rig) == first[1]
    assert takes.recipe(first[0])["steps"] == TEST_STEPS
    select(rig)

    assert bpy.ops.hymotion.take_generate_more(count=2) == {"FINISHED"}

    more = takes.takes_of(rig)
    assert more[:2] == first and [action["hymotion_seed"] for action in more[2:]] == [2, 3]
    assert all(action.frame_range[0] == 5 for action in more) and takes.shown_take(rig) == more[-1]
    assert [obj for obj in bpy.data.objects if obj.type == "ARMATURE"] == [rig]


def test_generate_with_one_seed_makes_no_take_unless_the_active_rig_has_takes(scene):
    takes = takes_module()
    assert bpy.ops.hymotion.generate(prompt=PROMPT, duration=1.0, seeds="0", steps=TEST_STEPS) == {"FINISHED"}
    (rig,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    assert takes.takes_of(rig) == []
    hand_made_takes(1, rig=rig)
    select(rig)

    assert bpy.ops.hymotion.generate(prompt="a person bows", duration=1.0, seeds="3", steps=TEST_STEPS,
                                     target="ACTIVE") == {"FINISHED"}
    assert [action["hymotion_prompt"] for action in takes.takes_of(rig)] == [PROMPT, "a person bows"]


def test_the_api_makes_takes_generates_more_on_a_mapped_rig_and_accepts_one(scene):
    api, takes = addon_module("api"), takes_module()
    made = api.generate(PROMPT, duration=1.0, seeds=(0, 1), steps=TEST_STEPS, takes=True)
    (source,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    assert api.takes_of(source) == made
    target = rigs.build_rig("Mixamo", rigs.mixamo_bones())
    retargeted = api.retarget_takes(source, target, feet_cleanup=False)

    more = api.generate_more_takes(target, count=1)

    assert [action["hymotion_seed"] for action in api.takes_of(target)] == [0, 1, 2]
    assert api.takes_of(target) == retargeted + more and takes.source_of(target, more[0]) == source
    assert [action["hymotion_seed"] for action in api.takes_of(source)] == [0, 1, 2]
    assert api.accept_take(more[0]) == more[0] and target.animation_data.action == more[0]
    assert scene.hymotion.history[0].accepted_seed == 2
    with pytest.raises(HyMotionError, match="is not a take of any rig"):
        api.accept_take(more[0])
    with pytest.raises(HyMotionError, match="not laid out on the NLA"):
        api.generate(PROMPT, seeds=(0, 1), takes=True, nla_layout="STACK")


@pytest.mark.parametrize("scope", ["ACTIVE", "ALL"])
def test_the_retarget_operators_carry_takes_over_and_leave_them_off_the_nla(scene, scope):
    takes = takes_module()
    source, made = hand_made_takes(2)
    target = rigs.build_rig("Mixamo", rigs.mixamo_bones())
    settings = scene.hymotion_retarget
    settings.source_armature, settings.target_armature, settings.scope = source, target, scope
    settings.feet_cleanup = False
    select(source)

    assert bpy.ops.hymotion.retarget_action() == {"FINISHED"}

    carried = takes.takes_of(target)
    assert [action["hymotion_seed"] for action in carried] == ([1] if scope == "ACTIVE" else [1, 0])
    assert not target.animation_data.nla_tracks

    for action in carried:
        takes.reject(action)
    assert bpy.ops.hymotion.take_retarget() == {"FINISHED"}
    assert [action["hymotion_seed"] for action in takes.takes_of(target)] == [0, 1]
    assert target.animation_data.action == takes.takes_of(target)[1] and not target.animation_data.nla_tracks


def test_takes_survive_saving_and_opening_the_file(scene, tmp_path):
    takes = takes_module()
    rig, made = hand_made_takes(2)
    takes.show(rig, made[0])
    names, rig_name, path = [action.name for action in made], rig.name, str(tmp_path / "takes.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path)

    bpy.ops.wm.open_mainfile(filepath=path)

    rig = bpy.data.objects[rig_name]
    assert [action.name for action in takes_module().takes_of(rig)] == names
    assert takes_module().shown_take(rig).name == names[0]
