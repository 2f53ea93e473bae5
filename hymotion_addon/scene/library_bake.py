"""A .blend animation library from a bake job, inside Blender: the Blender side of `hymotion-bake` and of
`hymotion farm --blend-every`.

The backend generates the clips (.npz files) and writes the job file (hymotion.shared.bake_job.BakeJob, whose
docstrings list its fields); Blender then runs in the background, imports this module from the add-on and calls
:func:`run_job`. The backend never runs this code itself: the job file is the whole hand-over.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from hymotion.shared.bake_job import BakeJob
from hymotion.shared.motion_files import read_motion_file

from . import bake, rig


def run_job(job_path: str | Path) -> None:
    """Read the job file ``hymotion-bake`` (or the farm) wrote and build its library."""
    bake_library(BakeJob.read(job_path))


def bake_library(job: BakeJob) -> None:
    """Build the rig in an empty file, bake one Action per clip (kept with a fake user) and save the file."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = job.fps, 1.0
    armature = rig.build_armature(scene.collection, with_mesh=job.with_mesh)
    last_frame = 1
    for clip in job.clips:
        data = read_motion_file(clip.path)
        action = bake.bake_motion(
            armature, data.translation, data.rotations, prompt=clip.prompt, seed=clip.seed, model=clip.model,
            duration=clip.duration, scene=scene, start_frame=1, in_place=job.in_place, name=clip.action, keys=job.keys,
        )
        action.use_fake_user = True
        end = action.frame_range[1]
        if job.nla:
            end = bake.push_to_nla(armature, action, job.nla).frame_end
        last_frame = max(last_frame, int(np.ceil(end)))
    scene.frame_start, scene.frame_end = 1, last_frame  # playback covers the whole layout: every clip, every strip
    bpy.ops.wm.save_as_mainfile(filepath=job.out)
