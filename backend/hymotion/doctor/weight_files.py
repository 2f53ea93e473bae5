"""Weight integrity: every variant and text encoder present, whole and readable, and the disk space still needed.

Without the hub's listing, completeness is read from the files themselves (safetensors headers, checkpoint zip
directories, JSON and YAML that parse); Git LFS pointers and interrupted downloads are named as such.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import weights
from . import hub
from .findings import FAIL, OK, WARN, Finding, State, gib, wanted_variant

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX_BYTES = 1024
_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


@dataclass
class FileProblem:
    path: str
    problem: str


@dataclass
class WeightGroup:
    """One thing ``hymotion download`` fetches: a model variant's folder or a text encoder."""

    label: str
    repo_id: str
    folder: Path | None
    path_in_repo: str
    required_for: str  # "lite", "standard" or "all"


def check_weights(state: State, verify_hashes: bool = False) -> tuple[list[Finding], list[WeightGroup]]:
    """Every variant and text encoder: present, whole and readable, with the command that fixes each gap."""
    groups = _weight_groups(state.model_dir)
    hub_note = ""
    listings: dict[str, dict[str, dict[str, Any]]] = {}
    if state.online:
        for repo_id in dict.fromkeys(group.repo_id for group in groups):
            listing = hub.listing(repo_id)
            if isinstance(listing, str):
                hub_note = f"hub not reachable ({listing}); checked the files offline"
                state.online = False
                listings.clear()
                break
            listings[repo_id] = listing
    else:
        hub_note = "offline (HF_HUB_OFFLINE or --offline): checked the files without the hub's sizes"
    state.hub_files = listings

    results: dict[str, tuple[list[FileProblem], int]] = {}
    for group in groups:
        repo_files = listings.get(group.repo_id)
        prefix = f"{group.path_in_repo}/" if group.path_in_repo else ""
        published = None
        if repo_files:
            published = {name[len(prefix):]: meta for name, meta in repo_files.items() if name.startswith(prefix)}
        problems: list[FileProblem] = []
        total = 0
        for relative in _expected_files(group, published):
            path = group.folder / relative if group.folder else None
            meta = (published or {}).get(relative, {})
            if path is None:
                problems.append(FileProblem(relative, "missing"))
                continue
            problem = inspect_file(path, meta.get("size"), meta.get("sha256") if verify_hashes else None)
            if problem:
                problems.append(FileProblem(str(path), problem))
            else:
                total += path.stat().st_size
        for partial in _interrupted_downloads(group, state.model_dir):
            problems.append(FileProblem(partial, "interrupted download (partial file)"))
        results[group.label] = (problems, total)

    def whole(group: WeightGroup) -> bool:
        return not results[group.label][0]

    encoders = [group for group in groups if group.required_for == "all"]
    state.encoders_complete = all(whole(group) for group in encoders)
    state.complete_variants = [group.required_for for group in groups if group.path_in_repo and whole(group)]
    wanted = wanted_variant(state)
    findings = []
    for group in groups:
        problems, total = results[group.label]
        fix_variant = group.required_for if group.required_for != "all" else wanted
        command = weights.download_command(fix_variant, state.model_dir)
        data = {"folder": str(group.folder) if group.folder else None, "repo_id": group.repo_id,
                "bytes": total, "problems": [asdict(problem) for problem in problems], "fix_command": command}
        where = str(group.folder) if group.folder else f"{group.repo_id} (not in the Hugging Face cache)"
        if not problems:
            findings.append(Finding(f"weights:{group.label}", OK, f"complete, {gib(total)} in {where}", data=data))
            continue
        nothing_there = all(problem.problem == "missing" for problem in problems) and total == 0
        optional = group.required_for not in ("all", wanted)
        if nothing_there and optional:
            findings.append(Finding(f"weights:{group.label}", OK, "not downloaded (optional variant)",
                                    f"To use it: {command}", data))
            continue
        status = WARN if optional else FAIL
        if nothing_there:
            summary = "not downloaded"
        else:
            summary = "; ".join(f"{Path(problem.path).name}: {problem.problem}" for problem in problems[:4])
            if len(problems) > 4:
                summary += f"; and {len(problems) - 4} more"
        broken = [problem.path for problem in problems if problem.problem not in ("missing",)
                  and not problem.problem.startswith("interrupted")]
        if nothing_there:
            advice = f"Download it: {command}"
        elif broken:
            advice = f"Delete the broken file{'s' if len(broken) > 1 else ''} listed above, then run: {command}"
        else:
            advice = f"Complete the download: {command}"
        findings.append(Finding(f"weights:{group.label}", status, f"{where}: {summary}", advice, data))
    findings.insert(0, Finding("hub", OK, hub_note or "hub reachable: sizes checked against the published files",
                               data={"online": state.online}))
    return findings, groups


def check_disk(state: State, groups: list[WeightGroup]) -> Finding:
    root = Path(state.model_dir).expanduser() if state.model_dir else hub.cache_dir()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as error:
        return Finding("disk", WARN, f"cannot read free space at {root} ({error})")
    missing_bytes = 0
    for group in groups:
        if group.required_for not in ("all", wanted_variant(state)):
            continue
        listing = state.hub_files.get(group.repo_id)
        if group.folder is not None and group.folder.is_dir() and not listing:
            continue
        if listing:
            prefix = f"{group.path_in_repo}/" if group.path_in_repo else ""
            for name, meta in listing.items():
                if name.startswith(prefix) and (meta.get("size") or 0) > 0:
                    present = group.folder / name[len(prefix):] if group.folder else None
                    have = present.stat().st_size if present and present.is_file() else 0
                    missing_bytes += max(0, (meta["size"] or 0) - have)
        else:
            missing_bytes += hub.DOWNLOAD_SIZE_ESTIMATES.get(group.label, 0)
    data = {"path": str(root), "free_bytes": usage.free, "total_bytes": usage.total, "download_bytes": missing_bytes}
    detail = f"{gib(usage.free)} free at {root}"
    if missing_bytes and usage.free < missing_bytes:
        return Finding("disk", FAIL, detail + f"; the missing weights need about {gib(missing_bytes)}",
                       "Free disk space, or download elsewhere with --model-dir DIR on a larger drive.", data)
    if missing_bytes:
        detail += f" (the missing weights need about {gib(missing_bytes)})"
    return Finding("disk", OK, detail, data=data)


def _weight_groups(model_dir: str | None) -> list[WeightGroup]:
    """What must exist, and where: the ``--model-dir`` layout, or the Hugging Face cache's snapshots."""
    groups = []
    if model_dir:
        root = Path(model_dir).expanduser()
        for variant, sub in weights.VARIANT_FOLDERS.items():
            groups.append(WeightGroup(sub, weights.MODEL_REPO_ID, root / sub, sub, variant))
        for repo_id, folder in weights.TEXT_ENCODER_FOLDERS.items():
            groups.append(WeightGroup(folder, repo_id, root / folder, "", "all"))
        return groups
    model_snapshot = weights.cached_snapshot(weights.MODEL_REPO_ID)
    for variant, sub in weights.VARIANT_FOLDERS.items():
        groups.append(WeightGroup(sub, weights.MODEL_REPO_ID, model_snapshot / sub if model_snapshot else None, sub,
                                  variant))
    for repo_id, folder in weights.TEXT_ENCODER_FOLDERS.items():
        groups.append(WeightGroup(folder, repo_id, weights.cached_snapshot(repo_id), "", "all"))
    return groups


def _expected_files(group: WeightGroup, published: dict[str, dict[str, Any]] | None) -> list[str]:
    """Paths inside the group's folder that must exist for it to load."""
    folder = group.folder
    if group.path_in_repo:
        if folder is not None and (folder / "transformer" / "config.json").is_file():  # converted to safetensors
            files = ["transformer/config.json", "conditioning.safetensors"]
            return files + _safetensors_files(folder / "transformer", "transformer/", "diffusion_pytorch_model")
        return ["config.yml", "latest.ckpt"]
    files = ["config.json", "tokenizer_config.json"]
    present = folder is not None and (folder / "tokenizer.json").is_file()
    if present or (published and "tokenizer.json" in published):
        files.append("tokenizer.json")
    else:
        files += ["vocab.json", "merges.txt"]
    if published:
        listed = [name for name in published if name.endswith(".safetensors") and "/" not in name]
        index_listed = [name for name in published if name.endswith(".safetensors.index.json") and "/" not in name]
        wanted = [name for name in listed + index_listed
                  if any(fnmatch.fnmatch(name, pattern) for pattern in weights.TEXT_ENCODER_PATTERNS)]
        return files + sorted(set(wanted) - set(files))
    return files + (_safetensors_files(folder, "", "model") if folder else ["model.safetensors"])


def _safetensors_files(folder: Path, prefix: str, stem: str) -> list[str]:
    """The index and the shards it names, or the single weights file."""
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, AttributeError):
            shards = []
        return [prefix + index.name] + [prefix + shard for shard in shards]
    return [f"{prefix}{stem}.safetensors"]


def inspect_file(path: Path, expected_size: int | None = None, expected_sha256: str | None = None) -> str | None:
    """Why ``path`` cannot be loaded, or None when it looks whole.

    Without hub metadata, completeness is read from the file itself: a safetensors header must parse and every
    tensor's byte range fit in the file; a torch checkpoint's zip directory (at the end of the file) must be readable.
    """
    if not path.is_file():
        return "missing"
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(LFS_POINTER_MAX_BYTES)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if size < LFS_POINTER_MAX_BYTES and head.startswith(LFS_POINTER_PREFIX):
        real = next((line.split()[1] for line in head.decode("utf-8", "replace").splitlines()
                     if line.startswith("size ") and len(line.split()) == 2), None)
        return f"Git LFS pointer, not the file ({gib(int(real)) if real and real.isdigit() else 'size unknown'})"
    if size == 0:
        return "empty file"
    if expected_size is not None and size != expected_size:
        relation = "truncated" if size < expected_size else "larger than published"
        return f"{relation}: {size:,} bytes, the hub lists {expected_size:,}"
    problem = None
    if path.suffix == ".safetensors":
        problem = _safetensors_problem(path, size)
    elif path.suffix in {".ckpt", ".pt", ".pth"} or (path.suffix == ".bin" and zipfile.is_zipfile(path)):
        problem = _zip_problem(path)
    elif path.suffix == ".json":
        problem = _json_problem(path)
    elif path.suffix in {".yml", ".yaml"}:
        problem = _yaml_problem(path)
    if problem is None and expected_sha256:
        digest = _sha256(path)
        if digest != expected_sha256:
            problem = f"checksum differs from the hub's (sha256 {digest[:12]}…, expected {expected_sha256[:12]}…)"
    return problem


def _safetensors_problem(path: Path, size: int) -> str | None:
    try:
        data_start, header = weights.read_safetensors_header(path)
    except weights.SafetensorsHeaderError as error:
        return str(error)
    except OSError as error:
        return f"unreadable safetensors header ({error})"
    end = 0
    for name, entry in header.items():
        try:
            begin, stop = entry["data_offsets"]
            elements = 1
            for dimension in entry["shape"]:
                elements *= dimension
        except (KeyError, TypeError, ValueError):
            return f"malformed safetensors entry {name!r}"
        width = _SAFETENSORS_DTYPE_BYTES.get(str(entry.get("dtype")))
        if width is not None and stop - begin != elements * width:
            return f"malformed safetensors entry {name!r} (byte range does not match its shape)"
        end = max(end, stop)
    if end > size - data_start:
        return f"truncated: tensors need {end + data_start:,} bytes, the file has {size:,}"
    return None


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile:
        return "truncated or corrupt: the checkpoint's zip directory is unreadable"
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    if not entries:
        return "corrupt: the checkpoint holds no data"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"not valid JSON ({str(error).splitlines()[0]})"
    return None


def _yaml_problem(path: Path) -> str | None:
    try:
        import yaml
    except ImportError:
        return None
    try:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as error:
        return f"not valid YAML ({str(error).splitlines()[0]})"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _interrupted_downloads(group: WeightGroup, model_dir: str | None) -> list[str]:
    """Partial files huggingface_hub leaves behind when a download stops (resumed by running the download again)."""
    if model_dir:
        # hymotion download puts the model repository in DIR and each text encoder in DIR/<its folder>.
        local_dir = Path(model_dir).expanduser()
        if not group.path_in_repo:
            local_dir /= group.label
        partial_root = local_dir / ".cache" / "huggingface" / "download"
        pattern = f"{group.path_in_repo}/**/*.incomplete" if group.path_in_repo else "**/*.incomplete"
    else:
        partial_root = hub.cache_dir() / f"models--{group.repo_id.replace('/', '--')}" / "blobs"
        pattern = "*.incomplete"
    if not partial_root.is_dir():
        return []
    return sorted(str(path) for path in partial_root.glob(pattern))
