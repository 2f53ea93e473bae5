"""The ``hymotion`` command: generate, download, convert, body-mesh, serve, doctor, bench, farm.

User errors exit with code 2 and a message plus a hint, never a traceback. Only results go to files; progress,
warnings and the chosen plan go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .paths import CACHE_DIR_HELP
from .shared.errors import BAD_CHECKPOINT, HyMotionError, bad_request, run_command
from .shared.jobs import (
    DEFAULT_CFG,
    DEFAULT_STEPS,
    GenerationSettings,
    check_duration,
    output_stem,
    parse_seeds,
    read_prompt_file,
)
from .shared.models import DEFAULT_MODEL, VARIANTS, model_help, variant_help

GIB = 1024**3
FORMATS = ("npz", "json")
DEFAULT_NAME_MAX = 255


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=model_help())
    parser.add_argument("--model-dir", help="folder holding the weights (default: the Hugging Face cache)")
    parser.add_argument("--plan", default="auto", help="memory plan: auto, gpu, partial, stream, cpu (default: auto)")
    parser.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    parser.add_argument("--precision", choices=("bf16", "fp32"),
                        help="the DiT's number format (default: bf16 on GPU plans; fp32 computes as the official code)")
    parser.add_argument("--compile", action="store_true", dest="compile_dit",
                        help="torch.compile the DiT on GPU plans: faster for large batches after a minute of compiling")
    parser.add_argument("--text-encoder-int8", action="store_true",
                        help="8-bit weights for Qwen3's layers (written beside its folder once): half the bytes to "
                        "read and stream, for small cards and RAM; the features change slightly (docs/performance.md)")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _at_least_one(text: str) -> int:
    """An argparse type for counts: 0 and negatives are refused (exit 2), not silently taken as the default."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is below 1; leave the option out for the default")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hymotion", description="HY-Motion 1.0 text-to-motion, tuned for local GPUs.")
    parser.add_argument("--version", action="version", version=f"hymotion {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="turn prompts into motion files")
    generate.add_argument("prompt", nargs="?", help='what the body does, e.g. "a person jumps twice"')
    generate.add_argument("--prompts", help="a text file with one prompt per line ('4.5 | prompt' sets its duration)")
    generate.add_argument("--duration", type=float, help="seconds, 0.67-12 (default: estimated from the prompt)")
    generate.add_argument("--seeds", default="0", help="seeds, e.g. 0,1,2 or 0-3 (default: 0)")
    generate.add_argument("--steps", type=_integer, default=DEFAULT_STEPS, help="sampling steps (default: 50)")
    generate.add_argument("--cfg", type=float, default=DEFAULT_CFG, help="guidance scale (default: 5.0; 1 = off)")
    generate.add_argument("--no-smoothing", action="store_true", help="skip the official temporal smoothing")
    generate.add_argument("--rewrite", action="store_true",
                          help="have the prompt rewriter of HYMOTION_PROMPTER_URL / _MODEL rephrase (and translate) "
                          "each prompt and estimate its duration; the original is kept in the file")
    generate.add_argument("--out", help="output file for a single prompt (default: <prompt>.npz)")
    generate.add_argument("--out-dir", help="output folder (one file per prompt and seed)")
    generate.add_argument("--format", choices=FORMATS, help="file format (default: from --out's suffix, else npz)")
    _add_model_arguments(generate)
    _add_constraint_arguments(generate)

    download = commands.add_parser("download", help="fetch the model and both text encoders")
    download.add_argument("--variant", choices=VARIANTS, default=DEFAULT_MODEL, help=variant_help())
    download.add_argument("--model-dir", help="download into this folder instead of the Hugging Face cache")

    convert = commands.add_parser("convert", help="turn an official folder (config.yml + latest.ckpt) into safetensors")
    convert.add_argument("source", help="folder with config.yml and latest.ckpt")
    convert.add_argument("destination", help="new folder (transformer/ + conditioning.safetensors)")

    body_mesh = commands.add_parser("body-mesh", help="the SMPL-X body (mesh, skin weights, joints) for the rig")
    body_mesh.add_argument("--smplx-model", required=True, help="your SMPLX_NEUTRAL.npz (from the SMPL-X site)")
    body_mesh.add_argument("--out", required=True, help="the .npz to write (vertices, faces, weights, joints)")

    from .service import add_serve_arguments

    serve = commands.add_parser("serve", help="long-lived service for the Blender add-on (JSON lines)")
    add_serve_arguments(serve)

    from .doctor import add_doctor_arguments

    doctor = commands.add_parser("doctor", help="check this machine, the weights and the GPU; suggest fixes")
    add_doctor_arguments(doctor)

    from .bench import add_bench_arguments

    bench = commands.add_parser("bench", help="measure memory and speed per plan at real sizes (random weights)")
    add_bench_arguments(bench)

    from .farm.command import add_farm_arguments

    farm = commands.add_parser("farm", help="many prompts x seeds on every GPU (Ray), resumable, into .blend libraries")
    add_farm_arguments(farm)
    return parser


def _prepare_folder(folder: Path) -> None:
    """Create the output folder now, so a bad location fails before minutes of generation, not after."""
    if folder.exists() and not folder.is_dir():
        raise bad_request(f"Output location {folder} is a file, not a folder.", "Choose another --out or --out-dir.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise bad_request(f"Cannot create the output folder {folder}: {error.strerror}.",
                          "Choose a folder you can write to with --out or --out-dir.") from None
    if not os.access(folder, os.W_OK):
        raise bad_request(f"Cannot write to {folder}.", "Choose a folder you can write to with --out or --out-dir.")


def _output_format(args) -> str:
    suffix = Path(args.out).suffix.lstrip(".").lower() if args.out else ""
    if suffix in FORMATS and args.format and args.format != suffix:
        raise bad_request(f"--out {args.out} ends in .{suffix} but --format is {args.format}.",
                          "Drop --format, or give the file the matching suffix.")
    return args.format or (suffix if suffix in FORMATS else "npz")


def _output_paths(args, prompts: list[str], seeds: list[int]) -> dict[tuple[int, int], Path]:
    extension = f".{args.format}"
    paths: dict[tuple[int, int], Path] = {}
    if args.out and (args.prompts or len(prompts) > 1):
        raise bad_request("--out names one file, but a prompt list gives several.", "Use --out-dir for prompt files.")
    if args.out:
        out = Path(args.out)
        base = out if out.suffix.lstrip(".").lower() == args.format else out.with_name(out.name + extension)
        _prepare_folder(base.parent)
        _check_name_lengths(base.parent, [base])
        if base.is_dir():
            raise bad_request(f"--out {out} is a folder.", "Give a file name, or use --out-dir.")
        for seed in seeds:
            paths[(0, seed)] = base if len(seeds) == 1 else base.with_name(f"{base.stem}_s{seed}{base.suffix}")
        _check_name_lengths(base.parent, paths.values())
        return paths
    folder = Path(args.out_dir or ".")
    _prepare_folder(folder)
    for index, prompt in enumerate(prompts):
        stem = output_stem(prompt) if len(prompts) == 1 else f"{index + 1:03d}_{output_stem(prompt)}"
        for seed in seeds:
            name = f"{stem}{extension}" if len(seeds) == 1 else f"{stem}_s{seed}{extension}"
            paths[(index, seed)] = folder / name
    return paths


def _check_name_lengths(folder: Path, paths) -> None:
    """A name the file system cannot hold fails now, with a message, not as a traceback after the generation."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = DEFAULT_NAME_MAX
    for path in paths:
        size = len(os.fsencode(path.name))
        if size > limit:
            raise bad_request(f"The output name {path.name[:40]}... is {size} bytes long, too long for this file "
                              f"system (at most {limit}).", "Choose a shorter --out name.")


def _describe_plan(report: dict) -> str:
    line = f"plan: {report['plan']} on {report['device']}"
    if report["plan"] != "cpu":
        line += (f" (expects {report['expected_vram_sampling'] / GIB:.1f} GiB VRAM while sampling, "
                 f"{report['expected_vram_encoding'] / GIB:.1f} GiB while encoding new prompts; "
                 f"{report['free_vram'] / GIB:.1f} of {report['total_vram'] / GIB:.1f} GiB free)")
    return line


def run_generate(args) -> int:
    from .shared.prompt_guide import analyse, duration_for

    if args.regenerate:
        return run_regenerate(args)
    if args.timeline:
        if args.rewrite:
            raise bad_request("--rewrite rewrites the prompt or --prompts file, not a --timeline's segments.",
                              "Drop --rewrite, or write the segments' prompts as the model likes them.")
        return run_timeline(args)
    if args.prompt and args.prompts:
        raise bad_request("Give either a prompt or --prompts FILE, not both.",
                          "Put every prompt in the file, or drop --prompts.")
    if args.prompts:
        lines = read_prompt_file(args.prompts)
        prompts = [line.prompt for line in lines]
        durations = [line.duration or args.duration for line in lines]
    elif args.prompt is not None:
        prompts, durations = [args.prompt], [args.duration]
    else:
        raise bad_request("No prompt given.", 'Try: hymotion generate "a person jumps twice" --duration 4')
    if args.duration is not None:
        check_duration(args.duration)
    originals = list(prompts)
    if args.rewrite:
        prompts, durations = _rewrite_prompts(prompts, durations)
    durations = [duration_for(p, d) for p, d in zip(prompts, durations)]
    settings = GenerationSettings(
        prompts=prompts, durations=durations, seeds=parse_seeds(args.seeds), cfg_scale=args.cfg, steps=args.steps,
        smoothing=not args.no_smoothing,
    ).validate()
    constraint = _constraint_from_args(args, settings.durations)
    args.format = _output_format(args)
    paths = _output_paths(args, originals, settings.seeds)  # named after the user's words, rewritten or not
    for index, prompt in enumerate(settings.prompts):
        for note in analyse(prompt).warnings:
            print(f"warning: prompt {index + 1}: {note.message} {note.suggestion}".rstrip(), file=sys.stderr)
        if args.prompt is not None and args.duration is None:
            print(f"duration: {settings.durations[index]:.1f} s (estimated; set --duration to override)",
                  file=sys.stderr)

    return _generate_and_save(args, settings, constraint, paths, originals)


def _generate_and_save(args, settings: GenerationSettings, constraint, paths, originals: list[str],
                       finish=None) -> int:
    """Load the pipeline, generate ``settings`` under ``constraint`` and write each clip (through ``finish``, if
    given) to its path, progress on stderr."""
    from tqdm import tqdm

    from .pipeline.loading import load_pipeline

    pipeline = load_pipeline(
        args.model, args.model_dir, args.plan, cache_dir=args.cache_dir, precision=args.precision,
        compile_dit=args.compile_dit, text_encoder_int8=args.text_encoder_int8,
    )
    print(_describe_plan(pipeline.describe()), file=sys.stderr)
    bar = tqdm(total=1, desc="starting", file=sys.stderr, leave=False)

    def on_progress(stage: str, step: int, total: int) -> None:
        bar.set_description(stage)
        bar.total = max(total, 1)
        bar.n = step
        bar.refresh()

    written = 0
    try:
        for clip in pipeline.generate(
            settings, on_progress=on_progress, on_warning=lambda m: print(f"warning: {m}", file=sys.stderr),
            constraint=constraint,
        ):
            path = paths[(clip.prompt_index, clip.seed)]
            if clip.prompt != originals[clip.prompt_index]:
                clip.original_prompt = originals[clip.prompt_index]
            if finish is not None:
                clip = finish(clip)
            try:
                clip.save(path, args.format)
            except OSError as error:
                raise bad_request(f"Cannot write {path}: {error.strerror}.", "Check the output location.") from None
            written += 1
            tqdm.write(f"wrote {path} ({clip.frames} frames, seed {clip.seed}, plan {clip.plan})", file=sys.stderr)
    finally:
        bar.close()
    print(f"{written} motion file(s) written.", file=sys.stderr)
    return 0


def run_regenerate(args) -> int:
    """--regenerate FILE:START-END: those frames of the clip made anew (the prompt, default the file's own, and the
    seed), pinned to the frames on both sides; every other frame written back as it was."""
    from .pipeline.regenerate import REGENERATE_CONTEXT, load_redo

    clashing = [flag for flag, value in (("--prompts", args.prompts), ("--timeline", args.timeline),
                                         ("--start-from", args.start_from), ("--end-at", args.end_at),
                                         ("--loop", args.loop), ("--duration", args.duration),
                                         ("--rewrite", args.rewrite)) if value]
    if clashing:
        raise bad_request(f"--regenerate does not combine with {', '.join(clashing)}.",
                          "It pins the frames on both sides of the range itself, and the range sets the duration.")
    redo = load_redo(args.regenerate, args.context_frames or REGENERATE_CONTEXT)
    prompt = args.prompt if args.prompt is not None else redo.prompt
    if not prompt.strip():
        raise bad_request(f"{redo.path} holds no prompt to regenerate with.", "Give one: hymotion generate \"a person "
                          f"turns\" --regenerate {args.regenerate}")
    settings = GenerationSettings(
        prompts=[prompt], durations=[redo.duration], seeds=parse_seeds(args.seeds), cfg_scale=args.cfg,
        steps=args.steps, smoothing=not args.no_smoothing,
    ).validate()
    constraint = redo.constraint()
    if constraint is not None:
        constraint.check(settings.durations)
    args.format = _output_format(args)
    paths = _output_paths(args, [prompt], settings.seeds)
    print(f"regenerating frames {redo.first}-{redo.last} of {redo.path} ({redo.frames} frames)", file=sys.stderr)
    return _generate_and_save(args, settings, constraint, paths, [prompt], finish=redo.splice)


def _rewrite_prompts(prompts: list[str], durations: list[float | None]) -> tuple[list[str], list[float | None]]:
    """--rewrite: each prompt as the configured prompter rephrases it, its duration estimate filling a duration the
    user left open; a prompt the prompter cannot rewrite (unreachable, slow, nonsense) stays as written. Every
    rewrite and every reason goes to stderr. Only an unconfigured prompter is an error: the user asked for it."""
    from .shared.prompt_guide import PROMPTER_MODEL_ENV, PROMPTER_URL_ENV, prompter_configured, rewrite_prompt

    if not prompter_configured():
        raise bad_request(
            "--rewrite needs a prompt rewriter, and none is configured.",
            f"Set {PROMPTER_URL_ENV} to an OpenAI-compatible base URL (e.g. http://127.0.0.1:8000/v1) and "
            f"{PROMPTER_MODEL_ENV} to the served model's name (docs/troubleshooting.md), or drop --rewrite.",
        )
    rewritten, new_durations = [], []
    for number, (prompt, duration) in enumerate(zip(prompts, durations), start=1):
        result, reason = rewrite_prompt(prompt)
        if result is None:
            print(f"rewrite: prompt {number} kept as written: {reason}", file=sys.stderr)
            rewritten.append(prompt)
            new_durations.append(duration)
            continue
        print(f"rewrite: prompt {number}: {result.prompt} ({result.duration:g} s by the rewriter)", file=sys.stderr)
        rewritten.append(result.prompt)
        new_durations.append(duration if duration is not None else result.duration)
    return rewritten, new_durations


def _add_constraint_arguments(generate: argparse.ArgumentParser) -> None:
    from .pipeline.timeline import TIMELINE_CONTEXT

    known = generate.add_argument_group("known frames (continue, in-between, loop, timeline; docs/blender.md)")
    known.add_argument("--start-from", metavar="FILE[:FRAME]",
                       help="start in the pose of FRAME (0-based, -1 = last, the default) of a motion file")
    known.add_argument("--context-frames", type=_at_least_one, metavar="N",
                       help="with --start-from: the N frames ending at FRAME guide the start (default 1); "
                            f"with --timeline: frames each segment continues from (default {TIMELINE_CONTEXT})")
    known.add_argument("--end-at", metavar="FILE[:FRAME]", help="end in the pose of FRAME of a motion file")
    known.add_argument("--loop", action="store_true", help="the last frame equals the first (for a Cycles modifier)")
    known.add_argument("--regenerate", metavar="FILE:START-END",
                       help="make frames START-END (0-based) of a motion file anew with the prompt (default: the "
                            "file's own) and seed, pinned to the frames on both sides; the rest is kept exactly")
    known.add_argument("--timeline", metavar="FILE",
                       help="one continuous motion from lines '4.5 | prompt', each continuing the previous")
    directing = generate.add_argument_group("directing (a root path, joint targets; docs/directing.md)")
    directing.add_argument("--path", metavar="FILE",
                           help="JSON list [[frame, x, z], ...] or [[frame, x, z, yaw_deg], ...]: the pelvis's ground "
                                "position (metres, Y up) at model frames (30 fps), sparse or one per frame")
    directing.add_argument("--facing", choices=("path", "free"), default="path",
                           help="the body faces along the path (default) or as the model likes; a waypoint's yaw wins")
    directing.add_argument("--target", action="append", metavar="JOINT:FRAME:X,Y,Z",
                           help="put a joint there at a frame (FIRST-LAST holds it; :RX,RY,RZ adds a world rotation "
                                "in degrees); repeatable")



def _constraint_from_args(args, durations: list[float]):
    """The known frames asked for, read and checked before any model is loaded (None: none asked for)."""
    from .pipeline.known_frames import MotionConstraint, load_context

    if args.context_frames is not None and not (args.start_from or args.timeline or args.regenerate):
        raise bad_request("--context-frames needs --start-from or --timeline.", "Add --start-from FILE.npz.")
    start = load_context(args.start_from, args.context_frames or 1) if args.start_from else None
    end = load_context(args.end_at) if args.end_at else None
    directions = _directions_from_args(args, start)
    if start is None and end is None and not args.loop and directions is None:
        return None
    constraint = MotionConstraint(start=start, end=end, loop=args.loop, directions=directions)
    if not args.timeline:
        constraint.check(durations)
    return constraint


def _directions_from_args(args, start):
    """--path, --facing and --target read and checked (reach included); what a body can hardly do is warned of when
    the generation starts (MotionPipeline.generate), and the motion is made."""
    from .pipeline.directing import directions_from_arguments

    if not (args.path or args.target):
        return None
    if args.timeline:
        raise bad_request("--path and --target do not combine with --timeline yet.", "Direct a single clip.")
    return directions_from_arguments(args.path, args.target or [], args.facing, start)


def run_timeline(args) -> int:
    """--timeline FILE: one clip per seed, the lines' prompts one after another as one continuous motion."""
    from .pipeline.timeline import TIMELINE_CONTEXT, Segment, check_timeline, generate_timeline
    from .shared.prompt_guide import duration_for

    if args.prompt or args.prompts:
        raise bad_request("--timeline takes its prompts from the file.", "Drop the prompt and --prompts.")
    if args.loop:
        raise bad_request("--loop does not combine with --timeline.", "Loop a single clip instead.")
    lines = read_prompt_file(args.timeline)
    segments = [Segment(line.prompt, duration_for(line.prompt, line.duration)) for line in lines]
    constraint = _constraint_from_args(args, [segment.duration for segment in segments])
    start, end = (constraint.start, constraint.end) if constraint is not None else (None, None)
    context_frames = args.context_frames or TIMELINE_CONTEXT
    if context_frames < 1:
        raise bad_request(f"--context-frames must be at least 1, got {context_frames}.", "Use e.g. 10.")
    check_timeline(segments, context_frames, start)
    settings = GenerationSettings([s.prompt for s in segments], [s.duration for s in segments],
                                  parse_seeds(args.seeds), args.cfg, args.steps).validate()
    args.format = _output_format(args)
    paths = _output_paths(args, [Path(args.timeline).stem], settings.seeds)

    from .pipeline.loading import load_pipeline

    pipeline = load_pipeline(
        args.model, args.model_dir, args.plan, cache_dir=args.cache_dir, precision=args.precision,
        compile_dit=args.compile_dit, text_encoder_int8=args.text_encoder_int8,
    )
    print(_describe_plan(pipeline.describe()), file=sys.stderr)
    for clip in generate_timeline(
        pipeline, segments, settings.seeds, steps=args.steps, cfg_scale=args.cfg, smoothing=not args.no_smoothing,
        context_frames=context_frames, start=start, end=end,
        on_warning=lambda m: print(f"warning: {m}", file=sys.stderr),
    ):
        path = paths[(0, clip.seed)]
        try:
            clip.save(path, args.format)
        except OSError as error:
            raise bad_request(f"Cannot write {path}: {error.strerror}.", "Check the output location.") from None
        print(f"wrote {path} ({clip.frames} frames, {len(segments)} segments, seed {clip.seed})", file=sys.stderr)
    return 0


def run_download(args) -> int:
    from .weights import download

    files = download(args.variant, args.model_dir)
    print(f"HY-Motion {args.variant}: {files.model_folder}\nQwen3: {files.qwen_folder}\nCLIP: {files.clip_folder}")
    return 0


def run_convert(args) -> int:
    from .model.loading import load_official, save_converted

    source = Path(args.source)
    if not ((source / "config.yml").is_file() and (source / "latest.ckpt").is_file()):
        raise HyMotionError(BAD_CHECKPOINT, f"{source} has no config.yml + latest.ckpt.",
                            "Point at an official HY-Motion-1.0-Lite or HY-Motion-1.0 folder.")
    destination = save_converted(load_official(source), args.destination)
    print(f"converted {source} -> {destination}")
    return 0


def run_body_mesh(args) -> int:
    from .shared.body_mesh import load_smplx_body

    body = load_smplx_body(args.smplx_model)
    path = body.save(args.out)
    print(f"wrote {path} ({len(body.vertices)} vertices, {len(body.faces)} faces)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command("hymotion", lambda: _dispatch(args))


def _dispatch(args) -> int:
    if args.command == "serve":
        from .service import serve_main

        return serve_main(args)
    if args.command == "doctor":
        from .doctor import doctor_main

        return doctor_main(args)
    if args.command == "bench":
        from .bench import bench_main

        return bench_main(args)
    if args.command == "farm":
        from .farm.command import farm_main

        return farm_main(args)
    run = {"generate": run_generate, "download": run_download, "convert": run_convert, "body-mesh": run_body_mesh}
    return run[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
