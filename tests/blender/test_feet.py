"""Foot contact cleanup: contacts found from the source's foot height and speed, the planted foot pinned (no sliding,
no sinking) with smooth blending, measured on a synthetic walk whose feet slide."""

from __future__ import annotations

import numpy as np
import pytest
import retarget_test_rigs as rigs
from hymotion_addon import retarget, retarget_feet, retarget_math

FRAMES = 90


def source_positions(translation, rotations) -> np.ndarray:
    _, positions = retarget_math.source_world(translation, rotations, retarget.source_skeleton())
    return positions


def test_contacts_are_the_stance_phases_of_a_walk():
    translation, rotations, stance = rigs.walk_clip(FRAMES)
    contacts = retarget_feet.detect_contacts(source_positions(translation, rotations), 30.0, retarget.source_skeleton())
    for side in (0, 1):
        found = contacts[:, side]
        assert (found & stance[:, side]).sum() >= 0.9 * stance[:, side].sum()
        assert (found & ~stance[:, side]).sum() <= 0.05 * FRAMES


def test_a_foot_lifted_or_moving_fast_is_not_in_contact():
    translation, rotations, _ = rigs.walk_clip(FRAMES, slip=3.0)  # the body races ahead: planted feet skate
    positions = source_positions(translation, rotations)
    contacts = retarget_feet.detect_contacts(positions, 30.0, retarget.source_skeleton())
    assert not contacts.any()
    translation, rotations, _ = rigs.walk_clip(FRAMES)
    translation[:, 1] += 0.2 * (np.arange(FRAMES) >= 45)  # jumps up half-way: the clip's floor is its lowest point
    contacts = retarget_feet.detect_contacts(source_positions(translation, rotations), 30.0, retarget.source_skeleton())
    assert contacts[:40].any() and not contacts[46:].any()


def ankle_tracks(armature, names) -> np.ndarray:
    return np.array([rigs.world_matrices(armature, names, frame + 1)[:, :3, 3] for frame in range(FRAMES)])


@pytest.mark.parametrize("rig_name, slip", [("mixamo", 0.25), ("arp_a_pose", 0.5)])
def test_cleanup_pins_planted_feet_on_a_sliding_walk(scene, rig_name, slip):
    scene.render.fps = 30
    builders = {"mixamo": rigs.mixamo_bones, "arp_a_pose": rigs.arp_a_pose_bones}
    armature = rigs.build_rig(rig_name, builders[rig_name]())
    translation, rotations, _ = rigs.walk_clip(FRAMES, slip=slip)
    mapping = retarget.detect_mapping(armature).mapped()
    ankles = [mapping["left_ankle"], mapping["right_ankle"]]
    contacts = retarget_feet.detect_contacts(source_positions(translation, rotations), 30.0, retarget.source_skeleton())

    retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    before = ankle_tracks(armature, ankles)
    retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=True)
    after = ankle_tracks(armature, ankles)

    standing = [armature.data.bones[name].head_local[2] for name in ankles]  # the rig's object is at the origin
    for side in (0, 1):
        drift_before = retarget_feet.contact_drift(before[:, side], contacts[:, side])
        drift_after = retarget_feet.contact_drift(after[:, side], contacts[:, side])
        print(f"{rig_name} slip {slip} side {side}: {drift_before * 1e3:.2f} -> {drift_after * 1e3:.3f} mm/frame")
        assert drift_before > 0.004  # the walk really slides
        assert drift_after < 0.05 * drift_before
        planted = after[contacts[:, side], side]
        assert planted[:, 2].min() >= standing[side] - 1e-4  # never sinks below the ankle's standing height
        jumps_before = np.linalg.norm(np.diff(before[:, side], axis=0), axis=-1).max()
        jumps_after = np.linalg.norm(np.diff(after[:, side], axis=0), axis=-1).max()
        assert jumps_after < 2.0 * jumps_before  # blends in and out instead of snapping


def test_cleanup_leaves_a_standing_pose_alone(scene):
    scene.render.fps = 30
    armature = rigs.build_rig("mixamo", rigs.mixamo_bones())
    translation, rotations = rigs.identity_clip(20)
    translation[:, 1] = 1.2  # stands on the floor the whole time
    mapping = retarget.detect_mapping(armature).mapped()
    plain = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=False)
    names = list(mapping.values())
    expected = rigs.world_matrices(armature, names, 10)
    cleaned = retarget.bake_onto_rig(armature, translation, rotations, mapping, feet_cleanup=True)
    np.testing.assert_allclose(rigs.world_matrices(armature, names, 10), expected, atol=1e-5)
    assert plain != cleaned


def test_contact_drift_measures_travel_during_contacts_only():
    track = np.zeros((6, 3))
    track[:, 0] = [0.0, 0.0, 0.1, 0.3, 0.3, 1.3]
    contacts = np.array([True, True, True, False, True, True])
    assert retarget_feet.contact_drift(track, contacts) == pytest.approx((0.0 + 0.1 + 1.0) / 3)
    assert retarget_feet.contact_drift(track, np.zeros(6, dtype=bool)) == 0.0
