"""`hymotion-bake`: a prompt list in, a .blend animation library out, without opening Blender's UI.

    hymotion-bake prompts.txt --out library.blend [--blender /path/to/blender] [--model lite] [--steps 50]

The motions are generated here, in this Python (the one the backend is installed in), and saved as .npz files in a
scratch folder beside a job file. Then Blender runs in the background - the ``blender`` executable given with
--blender, else the ``bpy`` module of a Python that has it - and the add-on's ``library_bake`` reads the job: it
builds the SMPL-X rig, bakes one Action per prompt (kept with a fake user, the prompt stored on it) and saves the file.
This module only prepares the job and launches Blender; it never runs add-on code itself.

Without downloaded weights (and no --model), the tiny random model is used and the output says plainly that its
motion is noise. User errors exit with code 2 and a hint.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import __version__
from .paths import CACHE_DIR_HELP
from .shared.bake_job import BakeClip, BakeJob, check_fps
from .shared.errors import INTERNAL, WEIGHTS_MISSING, HyMotionError, bad_request, run_command
from .shared.jobs import GenerationSettings, check_duration, read_prompt_file
from .shared.models import LITE, STANDARD, TINY, model_help
from .shared.presets import BUILTIN_PRESETS, GenerationPreset, PresetStore
from .shared.processes import end_group, own_group
from .shared.scratch import remove_blender_save_leftover, scratch_folder
from .shared.skeleton import FPS

AUTO_MODEL = "auto"
NOISE_NOTICE = (
    "No downloaded HY-Motion weights were found, so the tiny model with RANDOM weights is used: the motion in {out} "
    "is noise. Run `hymotion download` (or pass --model-dir) for real motion."
)
NLA_CHOICES = ("none", "sequence", "stack")
BLENDER_TIMEOUT_S = 600
OUTPUT_TAIL_LINES = 30

# The launch script Blender runs with the job file's path as its last argument. It makes the hymotion package this
# command comes from importable (unless Blender already has one, e.g. from the installed extension's wheel) without
# putting the whole backend environment on Blender's sys.path, finds the add-on (the job's addon_dir, else the
# extension enabled in that Blender) and hands the job to the add-on's library_bake.
_BLENDER_SCRIPT = """
import importlib, importlib.util, json, sys
job_path = sys.argv[-1]
job = json.load(open(job_path, encoding="utf-8"))
if "hymotion" not in sys.modules and importlib.util.find_spec("hymotion") is None:
    init = job["hymotion_package"] + "/__init__.py"
    spec = importlib.util.spec_from_file_location("hymotion", init, \
submodule_search_locations=[job["hymotion_package"]])
    package = importlib.util.module_from_spec(spec)
    sys.modules["hymotion"] = package
    spec.loader.exec_module(package)
if job["addon_dir"]:
    sys.path.append(job["addon_dir"])
    addon = "hymotion_addon"
else:
    import addon_utils
    extensions = [module.__name__ for module in addon_utils.modules()
                  if module.__name__.rpartition(".")[2] == "hymotion"]
    if not extensions:
        raise RuntimeError("The HY-Motion add-on is not installed in this Blender: "
                           "install the extension, or pass --addon-dir.")
    addon = extensions[0] + ".hymotion_addon"
importlib.import_module(addon + ".scene.library_bake").run_job(job_path)
"""


SCRATCH_PREFIX = "hymotion-bake-"


def _fps_argument(text: str) -> int:
    """--fps as the bake job checks a frame rate (hymotion.shared.bake_job.check_fps), refused by argparse (exit 2)."""
    try:
        return check_fps(int(text), "--fps")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of frames per second") from None
    except HyMotionError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hymotion-bake",
        description="Generate one Action per prompt and save them, with an SMPL-X rig, in a .blend file.",
    )
    parser.add_argument("--version", action="version", version=f"hymotion-bake {__version__}")
    parser.add_argument("prompts", help="text file, one prompt per line; '4.5 | prompt' sets that line's duration")
    parser.add_argument("--out", required=True, help="the .blend file to write (replaced if it exists)")
    parser.add_argument("--blender", help="Blender executable to bake with (default: the bpy module, see --bpy-python)")
    parser.add_argument("--bpy-python", help="a Python whose environment has the bpy module (default: this one)")
    parser.add_argument("--addon-dir", help="folder holding hymotion_addon/ (default: found next to this backend)")
    parser.add_argument("--model", default=AUTO_MODEL,
                        help=model_help(f"default: {LITE} if downloaded, else {STANDARD}, else {TINY}"))
    parser.add_argument("--model-dir", help="folder holding the weights (default: the Hugging Face cache)")
    parser.add_argument("--plan", default="auto", help="memory plan: auto, gpu, stream, cpu (default: auto)")
    parser.add_argument("--device", help="torch device, e.g. cuda:1 or cpu")
    parser.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    parser.add_argument("--preset", help=f"start from a preset: {', '.join(BUILTIN_PRESETS)} or one in --presets-file")
    parser.add_argument("--presets-file", help="the add-on's presets.json (shown in its Presets panel)")
    parser.add_argument("--duration", type=float, help="seconds for lines without one (default: estimated)")
    parser.add_argument("--seed", type=int, help="seed of every clip (default: 0)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: 50)")
    parser.add_argument("--cfg", type=float, help="guidance scale (default: 5.0)")
    parser.add_argument("--no-smoothing", action="store_true", help="skip the official temporal smoothing")
    parser.add_argument("--fps", type=_fps_argument, default=FPS,
                        help=f"frame rate of the file; other than {FPS} resamples")
    parser.add_argument("--in-place", action="store_true", help="remove the horizontal root motion")
    parser.add_argument("--nla", choices=NLA_CHOICES, default="none",
                        help="also lay the Actions out as NLA strips, end to end or stacked (default: none)")
    parser.add_argument("--with-mesh", action="store_true", help="give the rig a simple blocky body mesh")
    parser.add_argument("--keys", choices=("every-frame", "sparse"), default="every-frame",
                        help="a key on every frame, or sparse Bezier keys within 0.5 cm and 1 degree of every frame "
                        "(default: every-frame)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("hymotion-bake", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    lines = read_prompt_file(args.prompts)
    out = _output_path(args.out)
    blender = blender_command(args.blender, args.bpy_python)
    addon_dir = find_addon_dir(args.addon_dir)
    preset = _preset(args.preset, args.presets_file)
    settings = _settings(args, preset, lines)
    model = resolve_model(args.model, args.model_dir)
    if model == TINY:
        print(NOISE_NOTICE.format(out=out) if args.model == AUTO_MODEL else
              f"The tiny-random model has random weights: the motion in {out} is noise.", file=sys.stderr)
    with scratch_folder(SCRATCH_PREFIX) as scratch:
        clips = generate_clips(settings, model, args, Path(scratch))
        job = BakeJob(
            out=str(out), clips=tuple(clips), fps=args.fps,
            in_place=args.in_place or bool(preset.bake.get("in_place", False)),
            nla=None if args.nla == "none" else args.nla.upper(), with_mesh=args.with_mesh,
            keys=args.keys.upper().replace("-", "_"), addon_dir=str(addon_dir) if addon_dir else None,
        )
        manifest_path = job.write(Path(scratch) / "manifest.json")
        try:
            run_blender(blender, manifest_path)
        finally:
            remove_blender_save_leftover(out)  # a Blender stopped while saving leaves <out>@
    if not out.is_file():
        raise HyMotionError(
            INTERNAL, f"Blender finished but {out} was not written.", "Run again with a writable --out."
        )
    print(f"wrote {out}: the SMPL-X rig and {len(clips)} Action(s) ({model})", file=sys.stderr)
    return 0


def _output_path(text: str) -> Path:
    out = Path(text).expanduser().resolve()
    if out.suffix.lower() != ".blend":
        raise bad_request(f"--out {text} does not end in .blend.", "Name the library file like library.blend.")
    if out.is_dir():
        raise bad_request(f"--out {out} is a folder.", "Give a file name, e.g. library.blend.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise bad_request(f"Cannot write to {out.parent}.", "Choose a folder you can write to.")
    return out


def _preset(name: str | None, presets_file: str | None) -> GenerationPreset:
    if name is None:
        return GenerationPreset()
    if presets_file is not None:
        if not Path(presets_file).is_file():
            raise bad_request(f"Presets file {presets_file} does not exist.", "Copy its path from the add-on's panel.")
        return PresetStore(presets_file).get(name)
    if name not in BUILTIN_PRESETS:
        raise bad_request(f"Unknown preset {name!r}.",
                          f"Use one of {', '.join(BUILTIN_PRESETS)}, or pass --presets-file with yours.")
    return GenerationPreset.from_json(BUILTIN_PRESETS[name].to_json(), f"preset '{name}'")


def _settings(args: argparse.Namespace, preset: GenerationPreset, lines) -> GenerationSettings:
    from .shared.jobs import parse_seeds
    from .shared.prompt_guide import duration_for

    default_duration = args.duration if args.duration is not None else preset.duration or None
    if default_duration is not None:
        check_duration(default_duration)
    seed = args.seed if args.seed is not None else parse_seeds(preset.seeds)[0]
    return GenerationSettings(
        prompts=[line.prompt for line in lines],
        durations=[duration_for(line.prompt, line.duration, default_duration) for line in lines],
        seeds=[seed],
        cfg_scale=args.cfg if args.cfg is not None else preset.cfg,
        steps=args.steps if args.steps is not None else preset.steps,
        smoothing=False if args.no_smoothing else preset.smoothing,
    ).validate()


def resolve_model(model: str, model_dir: str | None) -> str:
    """``auto``: the first downloaded variant (lite, then standard), else tiny-random. Others pass through."""
    if model != AUTO_MODEL:
        return model
    from .weights import VARIANT_FOLDERS, locate

    for variant in VARIANT_FOLDERS:
        try:
            locate(variant, model_dir)
        except HyMotionError as error:
            if error.code != WEIGHTS_MISSING:
                raise
            continue
        return variant
    return TINY


def blender_command(blender: str | None, bpy_python: str | None) -> list[str]:
    """How to run Blender in the background; the manifest's path is appended. Fails early, naming what to install."""
    if blender is not None:
        found = shutil.which(blender) or (blender if Path(blender).is_file() else None)
        if found is None:
            raise bad_request(f"--blender {blender} does not exist.", "Pass the path of the blender executable.")
        return [found, "--background", "--python-exit-code", "1", "--python-expr", _BLENDER_SCRIPT, "--"]
    python = bpy_python or sys.executable
    if _has_bpy(python):
        return [python, "-c", _BLENDER_SCRIPT]
    if bpy_python is not None:
        raise bad_request(f"{bpy_python} cannot import bpy.", "Install the bpy module there, or pass --blender.")
    found = shutil.which("blender")
    if found is not None:
        return blender_command(found, None)
    raise bad_request(
        "There is no Blender to bake with: this Python has no bpy module and no `blender` is on PATH.",
        "Pass --blender /path/to/blender, or install the bpy module into this environment (pip install bpy; each "
        "bpy release needs the Python version of its Blender), or pass --bpy-python for a Python that has it.",
    )


def _has_bpy(python: str) -> bool:
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return importlib.util.find_spec("bpy") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('bpy') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_addon_dir(explicit: str | None) -> Path | None:
    """The folder holding hymotion_addon/: as given, else the source checkout this backend is installed from.

    None means Blender must already know the add-on (an installed and enabled extension)."""
    if explicit is not None:
        folder = Path(explicit).expanduser().resolve()
        if not (folder / "hymotion_addon" / "__init__.py").is_file():
            raise bad_request(f"{folder} holds no hymotion_addon/.", "Point --addon-dir at the extension's folder.")
        return folder
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "hymotion_addon" / "__init__.py").is_file() else None


def generate_clips(settings: GenerationSettings, model: str, args: argparse.Namespace, folder: Path) -> list[BakeClip]:
    """Run the pipeline here and save each clip as .npz; returns what Blender needs to know of each, in prompt
    order."""
    from .pipeline.loading import load_pipeline

    pipeline = load_pipeline(model, args.model_dir, args.plan, device=args.device, cache_dir=args.cache_dir)
    print(f"model {model}, plan {pipeline.plan} on {pipeline.device}", file=sys.stderr)
    clips: list[tuple[int, BakeClip]] = []
    for clip in pipeline.generate(settings, on_warning=lambda message: print(f"warning: {message}", file=sys.stderr)):
        path = clip.save(folder / f"{clip.prompt_index:04d}_s{clip.seed}.npz")
        clips.append((int(clip.prompt_index), BakeClip(
            path=str(path), prompt=clip.prompt, seed=int(clip.seed), duration=float(clip.duration),
            model=clip.model_id,
        )))
        print(f"generated {len(clips)}/{len(settings.prompts)}: {clip.prompt}", file=sys.stderr)
    return [clip for _, clip in sorted(clips, key=lambda pair: pair[0])]


def run_blender(command: list[str], manifest_path: Path) -> None:
    """Run Blender in its own process group and end the whole group however this returns: a timeout, Ctrl-C or
    SIGTERM (see errors.run_command) never leaves a Blender, or anything it started, running behind us."""
    try:
        process = subprocess.Popen(
            [*command, str(manifest_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **own_group(),
        )
    except OSError as error:
        raise bad_request(f"Cannot run {command[0]}: {error}.", "Check --blender / --bpy-python.") from None
    try:
        stdout, stderr = process.communicate(timeout=BLENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HyMotionError(INTERNAL, f"Blender did not finish within {BLENDER_TIMEOUT_S} s.",
                            "Try fewer prompts.") from None
    finally:
        _end_process_group(process)
    if process.returncode != 0:
        tail = "\n".join((stdout + stderr).splitlines()[-OUTPUT_TAIL_LINES:])
        raise HyMotionError(
            INTERNAL,
            f"Blender could not build the library (exit code {process.returncode}). Its last output:\n{tail}",
            "If it cannot import hymotion_addon, pass --addon-dir with the extension's folder.",
        )


def _end_process_group(process: subprocess.Popen) -> None:
    """Kill the child's process group (the child and anything it started) and reap it; close its pipes."""
    end_group(process)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


if __name__ == "__main__":
    sys.exit(main())
