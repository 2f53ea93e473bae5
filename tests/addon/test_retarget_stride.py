"""With Clean Up Feet off the hips follow the target's own planted feet (retarget_feet.follow_planted_feet), in
numpy without Blender: on a rig whose thigh-to-shin ratio differs from the SMPL-X body, a path free to accelerate
keeps a planted foot put while every bone keeps the source's rotation, the default path adds only a bounded
acceleration where the planted leg asks for a sudden change, and with no foot on the ground the hips keep the
source's path scaled by the leg-length ratio. (With the cleanup on the hips keep that scaled path throughout:
tests/blender/test_feet.py.)"""

from __future__ import annotations

import dataclasses

import numpy as np

from hymotion.shared.rotations import Y_UP_TO_Z_UP, axis_angle_matrix, matrix_to_quaternion, y_up_to_z_up
from hymotion.shared.skeleton import BODY_JOINT_NAMES, BODY_PARENTS, BODY_REST_POSITIONS
from hymotion_addon.core import retarget_feet, retarget_math

JOINT = {name: index for index, name in enumerate(BODY_JOINT_NAMES)}
FPS = 30.0
FRAMES = 60
# float64 throughout: a planted point is the sum of ~60 hips steps of ~1 cm and FK over ~1 m of bones, each rounding
# by ~1e-16 relative, so it stays put to ~1e-14 m; 1e-9 m keeps a margin of 10^5 and still catches any real slide
# (the leg-length-scaled path slides this rig's foot by centimetres, asserted below)
EXACT = 1e-9
# The least-squares path with no acceleration penalty, and a pull towards the scaled path so weak (over 10^4 s) that
# it moves the 2-second clip's planted foot by about anchor x frames^2 x drift = (1 / 300000)^2 x 60^2 x 0.05 m,
# 2e-12 m, far under EXACT: the path that keeps planted feet put exactly.
FREE = dataclasses.replace(retarget_feet.ContactSettings(), hips_settle_seconds=0.0, hips_anchor_seconds=1e4)


def source_skeleton() -> retarget_math.SourceSkeleton:
    """The SMPL-X body at rest in Blender space; bone tails at the chain child (the spine's for pelvis and spine3),
    leaves pointing on along their parent bone, as the add-on's armature has them."""
    heads = y_up_to_z_up(BODY_REST_POSITIONS)
    tails = heads.copy()
    chain = {"pelvis": "spine1", "spine3": "neck"}
    for joint, name in enumerate(BODY_JOINT_NAMES):
        children = [child for child, parent in enumerate(BODY_PARENTS) if parent == joint]
        if name in chain:
            tails[joint] = heads[JOINT[chain[name]]]
        elif len(children) == 1:
            tails[joint] = heads[children[0]]
        else:
            along = heads[joint] - heads[BODY_PARENTS[joint]]
            tails[joint] = heads[joint] + 0.1 * along / np.linalg.norm(along)
    return retarget_math.SourceSkeleton(heads=heads, tails=tails)


def long_shinned_plan(source: retarget_math.SourceSkeleton) -> retarget_math.RetargetPlan:
    """The SMPL-X body 10 % larger with its knees 6 cm higher (thigh about 15 % shorter, shin 15 % longer, so the
    thigh-to-shin ratio falls from about 0.95 to 0.7), bones along the world axes."""
    heads = source.heads * 1.1
    for side in ("left", "right"):
        heads[JOINT[f"{side}_knee"], 2] += 0.06
    rest = np.repeat(np.eye(4)[None], len(BODY_JOINT_NAMES), axis=0)
    rest[:, :3, 3] = heads
    target = retarget_math.TargetSkeleton(names=BODY_JOINT_NAMES, parents=np.array(BODY_PARENTS), rest=rest)
    return retarget_math.plan_retarget(source, target, {name: name for name in BODY_JOINT_NAMES})


def leg_clip(
    source: retarget_math.SourceSkeleton, planted: bool, knee_snap: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Two seconds of a body rocking over its bending left leg while the right leg swings high, in the model frame.

    planted: the left foot stays flat and put (its heel held in place by the root translation); otherwise the whole
    body also drifts forward at 1 m/s, faster than a planted point may move, so no foot is ever in contact.
    knee_snap: radians the left knee bends further from one frame to the next at the clip's middle (a sudden change
    the planted leg then asks of the hips)."""
    seconds = np.arange(FRAMES) / FPS
    wave = np.sin(2.0 * np.pi * seconds / 2.0)
    snap = np.arange(FRAMES) >= FRAMES // 2
    thigh, knee = 0.35 * wave, 0.6 + 0.4 * wave + knee_snap * snap
    world = np.repeat(np.eye(3)[None, None], len(BODY_JOINT_NAMES), axis=1).repeat(FRAMES, axis=0)
    side_turns = {"left": (thigh, knee), "right": (0.6 + 0.3 * wave, np.full(FRAMES, 1.3))}
    for side, (hip_angle, knee_angle) in side_turns.items():
        x = np.array([1.0, 0.0, 0.0])
        world[:, JOINT[f"{side}_hip"]] = axis_angle_matrix(x, hip_angle)  # flexion turns the thigh forward (-Y)
        world[:, JOINT[f"{side}_knee"]] = axis_angle_matrix(x, hip_angle - knee_angle)
        world[:, JOINT[f"{side}_ankle"]] = world[:, JOINT[f"{side}_foot"]] = np.eye(3)  # feet level
    local = world.copy()
    for joint, parent in enumerate(BODY_PARENTS):
        if parent >= 0:
            local[:, joint] = np.swapaxes(world[:, parent], -1, -2) @ world[:, joint]
    to_model = Y_UP_TO_Z_UP.T
    rotations = matrix_to_quaternion(to_model @ local @ to_model.T)
    _, positions = retarget_math.source_world(np.zeros((FRAMES, 3)), rotations, source)
    heel = positions[:, JOINT["left_ankle"]] + np.array([0.0, 0.0, source.heads[JOINT["left_foot"], 2]
                                                         - source.heads[JOINT["left_ankle"], 2]])
    offset = heel[0] - heel  # Blender frame: the root moves so the left heel stays where it started
    if not planted:
        offset[:, 1] -= 1.0 * seconds
    return offset @ Y_UP_TO_Z_UP, rotations


def foot_points(plan: retarget_math.RetargetPlan, wishes: retarget_math.Transfer) -> dict[int, np.ndarray]:
    return retarget_feet.foot_point_tracks(plan, retarget_math.pose_matrices(plan, wishes))


def horizontal_accelerations(path: np.ndarray) -> np.ndarray:
    """Per frame, the size of the horizontal acceleration (m/s^2) of a path (F, 3, Z up)."""
    return np.linalg.norm(np.diff(path[:, :2], n=2, axis=0), axis=-1) * FPS * FPS


def test_a_path_free_to_accelerate_keeps_a_planted_foot_put_on_other_leg_proportions_and_no_bone_turns():
    source = source_skeleton()
    plan = long_shinned_plan(source)
    translation, rotations = leg_clip(source, planted=True)
    wishes = retarget_math.transfer(plan, translation, rotations)
    scaled_hips = wishes.positions[plan.hips].copy()
    scaled_feet = foot_points(plan, wishes)
    turns = {bone: rotation.copy() for bone, rotation in wishes.rotations.items()}

    contacts = retarget_feet.follow_planted_feet(plan, wishes, FPS, FREE)

    assert contacts[:, 0].all() and not contacts[:, 1].any()  # the designed contacts: left heel and ball, always
    for bone, rotation in turns.items():
        np.testing.assert_array_equal(wishes.rotations[bone], rotation)  # every bone keeps the source's turn
    np.testing.assert_array_equal(wishes.positions[plan.hips][:, 2], scaled_hips[:, 2])  # height as it was
    planted = foot_points(plan, wishes)[0][:, :2, :2]  # left heel and ball, horizontal
    np.testing.assert_allclose(planted, np.broadcast_to(planted[:1], planted.shape), atol=EXACT)
    scaled = scaled_feet[0][:, :2, :2]
    assert np.ptp(scaled, axis=0).max() > 0.02  # scaled by leg length alone, this rig's planted foot slid


def test_where_the_planted_leg_asks_for_a_sudden_change_the_hips_add_only_a_bounded_acceleration():
    source = source_skeleton()
    plan = long_shinned_plan(source)
    translation, rotations = leg_clip(source, planted=True, knee_snap=0.3)
    settings = retarget_feet.ContactSettings()
    paths = {}
    for name, chosen in (("pinned", FREE), ("default", settings)):
        wishes = retarget_math.transfer(plan, translation, rotations)
        scaled = wishes.positions[plan.hips] @ plan.axes.T
        contacts = retarget_feet.follow_planted_feet(plan, wishes, FPS, chosen)
        assert contacts[:, 0].all()  # the left foot stays planted through the snap
        paths[name] = wishes.positions[plan.hips] @ plan.axes.T - scaled  # what the feet add to the scaled path

    # The path that keeps the foot put asks the hips for a velocity change (per axis, its range over the clip,
    # m/s, the knee snap's). Spread by the default path over its settle time tau, as an exponential kernel
    # exp(-|t| / tau) / (2 tau) spreads a signal, the change accelerates the hips by at most the kernel slope's
    # total size (1 / tau) times half the range, per axis. Where the foot's weight is below 1 the spread is wider.
    wished = np.ptp(np.diff(paths["pinned"][:, :2], axis=0) * FPS, axis=0)
    bound = np.linalg.norm(wished) / (2.0 * settings.hips_settle_seconds)
    assert horizontal_accelerations(paths["pinned"]).max() > 3.0 * bound  # kept put, the hips jerk at the snap
    assert horizontal_accelerations(paths["default"]).max() <= bound


def test_the_hips_path_is_the_least_squares_solution_of_its_stated_objective():
    rng = np.random.default_rng(7)
    frames, stiffness, anchor = 40, 5.0, 0.01
    scaled = rng.normal(size=(frames, 2))
    steps = rng.normal(size=(3, frames - 1, 2))
    weights = rng.random((3, frames - 1))

    path = retarget_feet.smooth_hips_path(scaled, steps, weights, stiffness, anchor)

    # the objective's residuals stacked as rows over the change d = path - scaled, solved by numpy's least squares
    first, second = np.diff(np.eye(frames), axis=0), np.diff(np.eye(frames), n=2, axis=0)
    rows = [np.sqrt(weights[c])[:, None] * first for c in range(3)] + [np.sqrt(stiffness) * second,
                                                                      np.sqrt(anchor) * np.eye(frames)]
    wanted = [np.sqrt(weights[c])[:, None] * (steps[c] - np.diff(scaled, axis=0)) for c in range(3)]
    wanted += [np.zeros((frames - 2, 2)), np.zeros((frames, 2))]
    change = np.linalg.lstsq(np.concatenate(rows), np.concatenate(wanted), rcond=None)[0]
    # the normal matrix's condition number is at most (4 x 3 + 16 x stiffness + anchor) / anchor ~ 1e4, so both
    # solvers agree to ~1e4 x 1e-16 relative on values of ~1; 1e-9 leaves a margin of 10^3
    np.testing.assert_allclose(path, scaled + change, atol=1e-9)


def test_with_no_foot_on_the_ground_the_hips_keep_the_scaled_source_path():
    source = source_skeleton()
    plan = long_shinned_plan(source)
    translation, rotations = leg_clip(source, planted=False)
    wishes = retarget_math.transfer(plan, translation, rotations)
    scaled_hips = wishes.positions[plan.hips].copy()

    contacts = retarget_feet.follow_planted_feet(plan, wishes, FPS)

    assert not contacts.any()
    np.testing.assert_allclose(wishes.positions[plan.hips], scaled_hips, atol=EXACT)
    assert np.ptp(scaled_hips[:, 1]) > 1.5  # ~1.1 x 1 m/s x 2 s of travel, kept as it was


def test_in_place_keeps_the_hips_over_their_rest_spot():
    source = source_skeleton()
    plan = long_shinned_plan(source)
    translation, rotations = leg_clip(source, planted=True)
    wishes = retarget_math.transfer(plan, translation, rotations, in_place=True)
    before = wishes.positions[plan.hips].copy()
    retarget_feet.follow_planted_feet(plan, wishes, FPS)
    np.testing.assert_array_equal(wishes.positions[plan.hips], before)
    np.testing.assert_allclose(before[:, :2], np.broadcast_to(plan.target.rest[plan.hips, :2, 3], (FRAMES, 2)))


def test_the_contact_phase_ramps_in_and_out_smoothly_and_not_at_the_clip_edges():
    mask = np.zeros(30, dtype=bool)
    mask[:6] = mask[10:20] = mask[24:] = True
    phase = retarget_feet.contact_phase(mask, 2)
    assert (phase[~mask] == 0.0).all()
    np.testing.assert_allclose(phase[10:13], phase[17:20][::-1])  # symmetric ramps over the first and last 3 frames
    assert 0.0 < phase[10] < phase[11] < 1.0 and (phase[12:18] == 1.0).all()
    assert phase[0] == phase[1] == 1.0 and phase[4] < 1.0  # the first contact starts with the clip: no ramp in
    assert phase[-1] == phase[-2] == 1.0 and phase[25] < 1.0  # the last runs into the clip's end: no ramp out


def skeleton_with_thighs_below(source: retarget_math.SourceSkeleton, thighs_parent: str) -> retarget_math.RetargetPlan:
    """The SMPL-X body 10 % larger with spine1 leaning 5 cm forward at rest (so its rest alignment turns it, and
    whatever hangs from it, upright), the thighs hanging from `thighs_parent`: 'pelvis' as in SMPL-X, or 'spine1' as
    Rigify's thighs hang from its spine_fk (bones reordered so that every parent comes first)."""
    order = [JOINT["pelvis"], JOINT["spine1"]] + [
        joint for joint in range(len(BODY_JOINT_NAMES)) if joint not in (JOINT["pelvis"], JOINT["spine1"])
    ]
    heads = source.heads * 1.1
    heads[JOINT["spine2"], 1] -= 0.05
    parents = np.array(BODY_PARENTS)
    parents[[JOINT["left_hip"], JOINT["right_hip"]]] = JOINT[thighs_parent]
    rest = np.repeat(np.eye(4)[None], len(order), axis=0)
    rest[:, :3, 3] = heads[order]
    position = {joint: slot for slot, joint in enumerate(order)}
    target = retarget_math.TargetSkeleton(
        names=tuple(BODY_JOINT_NAMES[joint] for joint in order),
        parents=np.array([position[parents[joint]] if parents[joint] >= 0 else -1 for joint in order]),
        rest=rest,
    )
    return retarget_math.plan_retarget(source, target, {name: name for name in BODY_JOINT_NAMES})


def test_the_hip_joints_follow_the_scaled_path_whatever_bone_the_thighs_hang_from():
    """The hips bone is placed from where the posed chain puts the thighs, not from their rest offset: on a rig whose
    thighs hang from a spine bone that the rest alignment (and the clip) turns, they still take the leg-length-scaled
    path exactly, the same as on a rig whose thighs hang from the hips bone. (Placed from the rest offset, they were
    off by that bone's turn, an offset that turned with the body: Rigify's 90-degree turn fell 0.10 % short.)"""
    source = source_skeleton()
    seconds = np.arange(FRAMES) / FPS
    yaw = np.radians(90.0) * seconds / seconds[-1]  # a 90-degree turn while walking on at 1 m/s
    local = np.repeat(np.eye(3)[None, None], len(BODY_JOINT_NAMES), axis=1).repeat(FRAMES, axis=0)
    local[:, JOINT["pelvis"]] = axis_angle_matrix(np.array([0.0, 0.0, 1.0]), yaw)
    local[:, JOINT["spine1"]] = axis_angle_matrix(np.array([1.0, 0.0, 0.0]), 0.2 * np.sin(np.pi * seconds))
    to_model = Y_UP_TO_Z_UP.T
    rotations = matrix_to_quaternion(to_model @ local @ to_model.T)
    walk = np.stack([-np.sin(yaw), -np.cos(yaw), np.zeros(FRAMES)], axis=1) / FPS  # Blender frame, facing -Y
    translation = np.cumsum(walk, axis=0) @ Y_UP_TO_Z_UP

    hip_joints, hips_bone = {}, {}
    for parent in ("pelvis", "spine1"):
        plan = skeleton_with_thighs_below(source, parent)
        wishes = retarget_math.transfer(plan, translation, rotations)
        posed = retarget_math.pose_matrices(plan, wishes)
        thighs = [plan.target.index(f"{side}_hip") for side in ("left", "right")]
        hip_joints[parent] = np.mean([posed[thigh][:, :3, 3] for thigh in thighs], axis=0)
        hips_bone[parent] = wishes.positions[plan.hips]

    np.testing.assert_allclose(hip_joints["spine1"], hip_joints["pelvis"], atol=EXACT)
    assert np.abs(hips_bone["spine1"] - hips_bone["pelvis"]).max() > 0.01  # the hips bone made up for spine1's turn
