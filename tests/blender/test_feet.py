"""Feet: heel and ball contacts found separately on the source, the target's foot planted where it touches (rolled
about the heel at heel-strike and about the ball at heel-off), never below the floor and not hovering while flat,
the hips on the leg-length-scaled path meanwhile, and the per-contact report; measured on synthetic gaits whose
source feet really plant (retarget_test_rigs.gait_clip)."""

from __future__ import annotations

import numpy as np
import pytest
import retarget_test_rigs as rigs

from hymotion_addon.core import retarget_feet, retarget_math
from hymotion_addon.scene import retarget, target_rig

SECONDS = 2.0
FRAMES = 60


def source_pose(translation, rotations):
    world, positions = retarget_math.source_world(translation, rotations, target_rig.source_skeleton())
    return positions, world


@pytest.mark.parametrize("kind", ["walk", "run", "jump"])
def test_heel_and_ball_contacts_are_found_separately(kind):
    translation, rotations, truth = rigs.gait_clip(kind, SECONDS)
    positions, world = source_pose(translation, rotations)
    found = retarget_feet.detect_contacts(positions, world, 30.0, target_rig.source_skeleton())
    assert truth[..., 0].any() and truth[..., 1].any() and (truth[..., 0] != truth[..., 1]).any()  # real phases
    # a point counts as down within 2 cm of the floor: the detector may see a rising heel or a landing ball a frame or
    # two early or late, never more (at 30 fps a heel rises 2 cm in about 2 frames)
    for side in range(2):
        for point in range(2):
            assert (found[:, side, point] != truth[:, side, point]).sum() <= 4 * len(
                retarget_feet.segments(truth[:, side, point])), (side, point)


def test_a_point_lifted_or_moving_fast_is_not_in_contact():
    translation, rotations, _ = rigs.walk_clip(FRAMES, slip=3.0)  # the body races ahead: planted feet skate
    positions, world = source_pose(translation, rotations)
    assert not retarget_feet.detect_contacts(positions, world, 30.0, target_rig.source_skeleton()).any()
    translation, rotations, _ = rigs.walk_clip(FRAMES)
    translation[:, 1] += 0.2 * (np.arange(FRAMES) >= 30)  # jumps up half-way: the clip's floor is its lowest point
    positions, world = source_pose(translation, rotations)
    contacts = retarget_feet.detect_contacts(positions, world, 30.0, target_rig.source_skeleton())
    assert contacts[:25].any() and not contacts[31:].any()


def pose_of(armature, plan, bones) -> dict[int, np.ndarray]:
    """Armature-space pose matrices (F, 4, 4) per bone index, from Blender's evaluation (the rig sits at the origin)."""
    names = [plan.target.names[bone] for bone in bones]
    matrices = np.array([rigs.world_matrices(armature, names, frame + 1) for frame in range(FRAMES)])
    return {bone: matrices[:, slot] for slot, bone in enumerate(bones)}


@pytest.fixture
def planted(scene):
    """A rig with other leg proportions than the source (so its feet slide without cleanup), walked both ways."""
    scene.render.fps = 30
    armature = rigs.build_rig("MixamoA", rigs.mixamo_a_pose_bones())
    translation, rotations, truth = rigs.gait_clip("walk", SECONDS)
    mapping = target_rig.detect_mapping(armature)
    plan = target_rig.plan_for(armature, mapping)
    feet = retarget_feet.plan_feet(plan)
    bones = sorted({bone for foot in feet for bone in (foot.foot, foot.toe)} | {plan.hips})
    retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    before = pose_of(armature, plan, bones)
    action = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=True)
    after = pose_of(armature, plan, bones)
    return plan, truth, before, after, action


def test_planted_heels_and_balls_stay_put_on_the_floor(planted):
    plan, truth, before, after, _ = planted
    slides_before = [report.slide for report in retarget_feet.measure_contacts(plan, before, truth)]
    reports = retarget_feet.measure_contacts(plan, after, truth)
    assert len(reports) == len(slides_before) >= 4
    # other proportions: with every bone on its source direction, two planted feet cannot both stay put while the
    # weight passes from one to the other, so without cleanup some point slides further than the 2 mm allowed below
    assert max(slides_before) > 0.004
    for report in reports:
        # 2 mm per contact: the target; the detector may join a contact a frame after the truth does, when
        # the point still moves by at most ~1 mm (it lands at near zero speed)
        assert report.slide <= 0.002, report
        assert report.penetration <= 1e-4, report  # float32 keys over ~1 m: ~1e-6 m, with a wide margin
        assert report.hover <= 0.003, report  # the target; the pivot point sits exactly on the floor


def test_with_cleanup_the_hips_play_the_leg_length_scaled_source_path(planted):
    plan, _, before, after, _ = planted
    translation, rotations, _ = rigs.gait_clip("walk", SECONDS)
    scaled = retarget_math.transfer(plan, translation, rotations).positions[plan.hips] @ plan.axes.T  # Z up
    played = after[plan.hips][:, :3, 3] @ plan.axes.T
    # Blender keys the hips in float32 and evaluates float32 matrices over coordinates of at most ~3 m (2.4 m of
    # walk): one rounding is 2.4e-7 m, the few in a key and a pose product stay within ~1e-6 m; 1e-5 m keeps a margin
    # of 10 and is 1000 times smaller than what the cleanup-off path changes on this rig (asserted below). The IK
    # may only lower the hips, so only the horizontal path is compared.
    np.testing.assert_allclose(played[:, :2], scaled[:, :2], atol=1e-5)
    without_cleanup = before[plan.hips][:, :3, 3] @ plan.axes.T  # follows the rig's own planted feet instead
    assert np.abs(without_cleanup[:, :2] - scaled[:, :2]).max() > 0.01


def test_the_foot_never_goes_below_the_floor_and_rolls_about_the_ball_at_heel_off(planted):
    plan, truth, _, after, _ = planted
    tracks = retarget_feet.foot_point_tracks(plan, after)
    for foot in retarget_feet.plan_feet(plan):
        points = tracks[foot.side]
        assert (points[..., 2] >= foot.floors - 1e-4).all()  # heel, ball and toe tip (float32 keys, as above)
        heel_off = truth[:, foot.side, 1] & ~truth[:, foot.side, 0]
        for start, stop in retarget_feet.segments(heel_off):
            ball, heel, tip = points[start:stop, 1], points[start:stop, 0], points[start:stop, 2]
            assert np.ptp(ball[:, :2], axis=0).max() <= 0.002  # the ball stays where it is ...
            assert heel[-1, 2] - heel[0, 2] > 0.01  # ... while the heel rises
            np.testing.assert_allclose(tip[:, 2], foot.floors[2], atol=0.003)  # and the toe lies flat


def test_the_action_carries_the_contact_report_and_the_bones_cleanup_turned(planted):
    plan, _, _, _, action = planted
    contacts = action["hymotion_contacts"]
    assert contacts and all(len(values) == 3 for values in contacts.values())
    assert {key.split()[1] for key in contacts} == {"heel", "ball"}
    residual = dict(action["hymotion_residual_degrees"])
    legs = {plan.target.names[bone] for foot in retarget_feet.plan_feet(plan) for bone in (foot.thigh, foot.shin)}
    assert set(residual) <= legs | {plan.target.names[foot.foot] for foot in retarget_feet.plan_feet(plan)} | {
        plan.target.names[foot.toe] for foot in retarget_feet.plan_feet(plan)}
    assert residual and all(degrees > retarget.RESIDUAL_REPORT_DEGREES for degrees in residual.values())
    assert retarget.residual_summary(action).count("°") == min(len(residual), 4)


def test_without_cleanup_the_action_reports_how_far_each_planted_point_slides(scene):
    scene.render.fps = 30
    armature = rigs.build_rig("MixamoA", rigs.mixamo_a_pose_bones())
    translation, rotations, _ = rigs.gait_clip("walk", SECONDS)
    mapping = target_rig.detect_mapping(armature)
    action = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    slides = [values[0] for values in action["hymotion_contacts"].values()]
    # this rig's other leg proportions make some planted point slide without cleanup (see the test above)
    assert slides and max(slides) > 0.004
    assert not dict(action["hymotion_residual_degrees"]), "without cleanup no bone leaves its source direction"


def test_cleanup_leaves_a_standing_pose_alone(scene):
    scene.render.fps = 30
    armature = rigs.build_rig("mixamo", rigs.mixamo_bones())
    translation, rotations = rigs.identity_clip(20)
    translation[:, 1] = 1.2  # stands on the floor the whole time
    mapping = target_rig.detect_mapping(armature).mapped()
    plain = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    names = list(mapping.values())
    expected = rigs.world_matrices(armature, names, 10)
    cleaned = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=True)
    np.testing.assert_allclose(rigs.world_matrices(armature, names, 10), expected, atol=1e-5)
    assert plain != cleaned and dict(cleaned["hymotion_residual_degrees"]) == {}


def test_contact_report_measures_slide_penetration_and_hover_of_one_contact():
    plan = retarget_math.plan_retarget(
        target_rig.source_skeleton(), retarget_test_target(), {joint: joint for joint in rigs.JOINT}
    )
    foot = retarget_feet.plan_feet(plan)[0]
    frames = 5
    rest = plan.target.rest
    matrices = {bone: np.repeat(rest[bone][None], frames, axis=0) for bone in range(len(plan.target.names))}
    matrices[foot.foot][:, 0, 3] += [0.0, 0.01, 0.03, 0.03, 0.03]  # slides 3 cm in x
    matrices[foot.foot][:, 2, 3] += [0.0, 0.0, 0.002, -0.004, 0.0]  # hovers 2 mm, sinks 4 mm
    matrices[foot.toe] = matrices[foot.toe].copy()
    matrices[foot.toe][:, :3, 3] = matrices[foot.foot][:, :3, 3] + (rest[foot.toe, :3, 3] - rest[foot.foot, :3, 3])
    contacts = np.zeros((frames, 2, 2), dtype=bool)
    contacts[:, 0, :] = True  # the left foot flat: heel and ball down
    report, _ = retarget_feet.measure_contacts(plan, matrices, contacts)
    assert (report.side, report.point, report.start, report.stop) == ("left", "heel", 0, 5)
    assert report.slide == pytest.approx(0.03) and report.hover == pytest.approx(0.002)
    assert report.penetration == pytest.approx(0.004)
    # heel down, ball up (heel strike): the height is not hover, the foot is not flat (issue 27)
    contacts[:, 0, 1] = False
    (report,) = retarget_feet.measure_contacts(plan, matrices, contacts)
    assert report.hover == 0.0 and report.slide == pytest.approx(0.03)


def retarget_test_target() -> retarget_math.TargetSkeleton:
    """The SMPL-X body itself as a target rig (identity rest rotations), for checks that need no Blender rig."""
    from hymotion.shared.skeleton import BODY_JOINT_NAMES, BODY_PARENTS

    source = target_rig.source_skeleton()
    rest = np.repeat(np.eye(4)[None], len(BODY_JOINT_NAMES), axis=0)
    rest[:, :3, 3] = source.heads
    return retarget_math.TargetSkeleton(names=tuple(BODY_JOINT_NAMES), parents=np.array(BODY_PARENTS), rest=rest)
