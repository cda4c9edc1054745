# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch entry point for Refine Motion.

    python build.py package [--out DIR] [--blender PATH] [--no-blender-validate]
        Build the installable extension zip refine_motion-<version>.zip and
        validate it: manifest fields, zip contents, then Blender's own
        `extension validate` (from a Blender executable, or the copy shipped
        in an installed `bpy` module) when one is available.

    blender -b -P build.py -- --footage SHOT.mp4 --keypoints KP.json [--init INIT.npz] [--smpl PATH]
                              [--out SHOT.blend] [--bvh SHOT.bvh] [--fbx SHOT.fbx]
                              [--retarget CHARACTER.blend --preset rigify] [--force] ...
    python build.py -- --footage ... (the same, with the bpy module)
        Refine shots headless: each one goes through the add-on's Refine
        pipeline in a fresh scene and is saved as a .blend (and exported).
        Several shots: several --footage paths (or a folder of videos) with as
        many --keypoints (or a folder holding <footage name>.npz/.npy/.json or an
        OpenPose folder <footage name>/); outputs then name folders.  Shots run
        one after another; a summary follows; the exit code is 1 if any failed.
        Existing outputs are never overwritten without --force.

Inside Blender the arguments after "--" are this script's own.
"""

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "blender_manifest.toml"
ADDON_DIR = ROOT / "scorehmr_blender"
BACKEND_DIR = ROOT / "backend"
REQUIREMENT_FILES = ("engine.txt", "constraints.txt")

MIN_BLENDER = (4, 2, 0)
MAX_FILE_BYTES = 20 * 1024 * 1024
TERSE_MAX = 64
REQUIRED_FIELDS = (
    "schema_version", "id", "version", "name", "tagline",
    "maintainer", "type", "blender_version_min", "license",
)
KNOWN_PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)
VERSION_TRIPLE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")

USAGE = """\
usage: python build.py package [--out DIR] [--blender PATH] [--no-blender-validate]
       blender -b -P build.py -- package [--out DIR]
       blender -b -P build.py -- --footage SHOT.mp4 --keypoints KP.json [options]
       python build.py -- --footage SHOT.mp4 --keypoints KP.json [options]

commands:
  package      build and validate refine_motion-<version>.zip
  --footage    refine shots headless into .blend files (--help for the options)"""


class BuildError(Exception):
    """A failure with a one-line message for the user."""


# --------------------------------------------------------------------------
# Manifest validation (pure functions on the parsed TOML dict)

def _is_text(value):
    return isinstance(value, str) and value.strip() != ""


def _terse_error(value):
    """Blender's rule for one-line texts (tagline, permission reasons), or None."""
    if len(value) > TERSE_MAX:
        return f"is {len(value)} characters (at most {TERSE_MAX})"
    if value != value.strip() or any(ord(c) < 32 for c in value):
        return "has surrounding spaces or control characters"
    if not (value[-1].isalnum() or value[-1] in ")]}"):
        return "must not end with punctuation"
    return None


def validate_manifest(manifest):
    """Return a list of problems with a parsed blender_manifest.toml (empty if valid)."""
    errors = []
    for field in REQUIRED_FIELDS:
        if field not in manifest:
            errors.append(f"missing required field '{field}'")

    def text_field(field):
        value = manifest.get(field)
        if field in manifest and not _is_text(value):
            errors.append(f"'{field}' must be a non-empty string")
            return None
        return value

    if manifest.get("schema_version", "1.0.0") != "1.0.0":
        errors.append(f"unsupported schema_version {manifest['schema_version']!r} (expected '1.0.0')")

    ext_id = text_field("id")
    if ext_id is not None:
        if not ext_id.isidentifier() or ext_id.startswith("_") or ext_id.endswith("_") or "__" in ext_id:
            errors.append(f"id {ext_id!r} is not a valid identifier")

    version = text_field("version")
    if version is not None and not SEMVER.match(version):
        errors.append(f"version {version!r} is not semantic (MAJOR.MINOR.PATCH)")

    text_field("name")
    text_field("maintainer")

    tagline = text_field("tagline")
    if tagline is not None and (problem := _terse_error(tagline)):
        errors.append(f"tagline {problem}")

    ext_type = text_field("type")
    if ext_type is not None and ext_type not in ("add-on", "theme"):
        errors.append(f"type {ext_type!r} must be 'add-on' or 'theme'")

    vmin = text_field("blender_version_min")
    if vmin is not None:
        match = VERSION_TRIPLE.match(vmin)
        if not match:
            errors.append(f"blender_version_min {vmin!r} must look like X.Y.Z")
        elif tuple(map(int, match.groups())) < MIN_BLENDER:
            errors.append(f"blender_version_min {vmin} is older than 4.2.0 (extensions need 4.2+)")
        vmax = manifest.get("blender_version_max")
        if vmax is not None:
            match_max = VERSION_TRIPLE.match(vmax) if isinstance(vmax, str) else None
            if not match_max:
                errors.append(f"blender_version_max {vmax!r} must look like X.Y.Z")
            elif match and tuple(map(int, match_max.groups())) <= tuple(map(int, match.groups())):
                errors.append("blender_version_max must be greater than blender_version_min")

    if "license" in manifest:
        licenses = manifest["license"]
        if not isinstance(licenses, list) or not licenses:
            errors.append("license must be a non-empty list")
        else:
            for lic in licenses:
                if not isinstance(lic, str) or not lic.startswith("SPDX:") or len(lic) <= len("SPDX:"):
                    errors.append(f"license {lic!r} must be an 'SPDX:' identifier")

    tags = manifest.get("tags", [])
    if not isinstance(tags, list) or not all(_is_text(t) for t in tags):
        errors.append("tags must be a list of strings")

    website = manifest.get("website")
    if website is not None and not (isinstance(website, str) and re.match(r"^https?://\S+$", website)):
        errors.append(f"website {website!r} must be an http(s) URL")

    permissions = manifest.get("permissions", {})
    if not isinstance(permissions, dict):
        errors.append("permissions must be a table of 'name = \"reason\"'")
    else:
        for name, reason in permissions.items():
            if name not in KNOWN_PERMISSIONS:
                errors.append(f"unknown permission {name!r}")
            if not _is_text(reason):
                errors.append(f"permission {name!r} needs a reason string")
            elif problem := _terse_error(reason):
                errors.append(f"permission {name!r} reason {problem}")

    return errors


def load_manifest(path=MANIFEST):
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise BuildError(f"{path} not found") from None
    except tomllib.TOMLDecodeError as ex:
        raise BuildError(f"{path} is not valid TOML: {ex}") from None


def check_manifest(manifest):
    errors = validate_manifest(manifest)
    if errors:
        raise BuildError("invalid manifest: " + "; ".join(errors))


# --------------------------------------------------------------------------
# Package contents

def _skip(path):
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def package_files():
    """(source path, name inside the zip) pairs, sorted by zip name."""
    files = [(MANIFEST, "blender_manifest.toml")]
    # The worker environment's pinned requirements (Set Up Worker Environment installs them).
    for name in REQUIREMENT_FILES:
        files.append((ROOT / "requirements" / name, "requirements/" + name))
    for path in ADDON_DIR.rglob("*"):
        if path.is_file() and not _skip(path.relative_to(ADDON_DIR)):
            files.append((path, path.relative_to(ADDON_DIR).as_posix()))
    if BACKEND_DIR.is_dir():
        backend = [p for p in BACKEND_DIR.rglob("*.py")]
        assets = BACKEND_DIR / "assets"
        if assets.is_dir():
            backend += [p for p in assets.rglob("*") if p.is_file()]
        for path in sorted(set(backend)):
            rel = path.relative_to(BACKEND_DIR)
            if not _skip(rel):
                files.append((path, "backend/" + rel.as_posix()))
    return sorted(files, key=lambda item: item[1])


def check_zip(zip_path):
    """Validate a built extension zip; return its parsed manifest."""
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        names = {info.filename for info in infos}
        for required in ("blender_manifest.toml", "__init__.py"):
            if required not in names:
                raise BuildError(f"{zip_path.name}: {required} missing at the zip root")
        for info in infos:
            parts = info.filename.split("/")
            if info.filename.endswith((".pyc", ".pyo")) or "__pycache__" in parts:
                raise BuildError(f"{zip_path.name}: compiled Python file {info.filename}")
            if any(part.lower() == "torch" or part.lower().startswith("torch-") for part in parts):
                raise BuildError(f"{zip_path.name}: must not bundle torch ({info.filename})")
            if info.file_size > MAX_FILE_BYTES:
                raise BuildError(
                    f"{zip_path.name}: {info.filename} is {info.file_size / 2**20:.1f} MB "
                    f"(limit {MAX_FILE_BYTES // 2**20} MB)"
                )
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    check_manifest(manifest)
    return manifest


def find_validator(blender=None):
    """Blender's own `extension validate`, as (command prefix, description), or None.

    Tried in order: the given Blender executable; Blender itself when this runs
    inside it; `blender` on PATH; the validator shipped in the `bpy` module of
    this Python (found without importing bpy).
    """
    if blender is None and "bpy" in sys.modules:
        blender = sys.modules["bpy"].app.binary_path or None
    blender = blender or shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension", "validate"], blender

    spec = importlib.util.find_spec("bpy")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for cli in sorted(Path(root).glob("[0-9]*.[0-9]*/scripts/addons_core/bl_pkg/cli/blender_ext.py")):
            version_dir = cli.parents[4]
            tags = version_dir / "scripts/modules/_bpy_internal/extensions/tags.py"
            cmd = [sys.executable, str(cli), "validate"]
            if tags.is_file():
                cmd += ["--valid-tags", str(tags)]
            return cmd, f"bundled with the bpy {version_dir.name} module"
    return None


def blender_validate(command, zip_path):
    """Run Blender's extension validator (a command prefix) on the zip."""
    try:
        proc = subprocess.run(command + [str(zip_path)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as ex:
        raise BuildError(f"could not run {command[0]}: {ex}") from None
    output = (proc.stdout + proc.stderr).strip()
    problems = [line.strip() for line in output.splitlines()
                if re.match(r"\s*(FATAL_)?ERROR\b", line, re.IGNORECASE)]
    if proc.returncode != 0 or problems:
        detail = " / ".join(problems) or (output.splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise BuildError(f"Blender's extension validate failed: {detail}")


def build_package(out_dir, validator=None):
    """Build, validate and return the path of refine_motion-<version>.zip."""
    manifest = load_manifest()
    check_manifest(manifest)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{manifest['id']}-{manifest['version']}.zip"

    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for src, arcname in package_files():
                zf.write(src, arcname)
        check_zip(tmp)
        if validator:
            # Blender's validator wants a *.zip name.
            with tempfile.TemporaryDirectory() as tmpdir:
                probe = Path(tmpdir) / final.name
                shutil.copyfile(tmp, probe)
                blender_validate(validator, probe)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


# --------------------------------------------------------------------------
# Command line

def script_args(argv=None):
    """This script's own arguments: those after "--" inside Blender, else argv[1:]."""
    argv = sys.argv if argv is None else argv
    if "bpy" in sys.modules:
        return argv[argv.index("--") + 1:] if "--" in argv else []
    return argv[1:]


def cmd_package(args):
    parser = argparse.ArgumentParser(prog="build.py package", description="Build the extension zip.")
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output folder (default: dist/)")
    parser.add_argument("--blender", help="Blender executable for 'extension validate' "
                                          "(default: 'blender' on PATH, else the validator "
                                          "shipped with an installed bpy module)")
    parser.add_argument("--no-blender-validate", action="store_true",
                        help="only run this script's own checks")
    opts = parser.parse_args(args)

    if opts.blender and not (shutil.which(opts.blender) or Path(opts.blender).is_file()):
        raise BuildError(f"Blender executable not found: {opts.blender}")
    found = None if opts.no_blender_validate else find_validator(opts.blender)
    validator, validator_name = found or (None, None)

    zip_path = build_package(opts.out, validator=validator)
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    manifest = load_manifest()
    size = zip_path.stat().st_size
    print(f"built {zip_path}")
    print(f"  {manifest['name']} {manifest['version']} (id {manifest['id']}, "
          f"Blender {manifest['blender_version_min']}+)")
    print(f"  {len(infos)} files, {size / 1024:.1f} KiB compressed, "
          f"{sum(1 for i in infos if i.filename.startswith('backend/'))} in backend/")
    if validator:
        print(f"  Blender's extension validate: passed ({validator_name})")
    else:
        print("  Blender's extension validate: skipped "
              + ("(--no-blender-validate)" if opts.no_blender_validate else "(no blender or bpy found)"))
    return 0


# --------------------------------------------------------------------------
# Batch refinement (needs bpy: Blender, or the bpy module)

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".mts", ".mxf"}
KEYPOINT_SUFFIXES = (".npz", ".npy", ".json")
INIT_SUFFIXES = (".npz", ".pkl")


def refine_parser():
    parser = argparse.ArgumentParser(
        prog="build.py --", description="Refine shots headless (Blender or the bpy module) into .blend files.")
    parser.add_argument("--footage", nargs="+", required=True,
                        help="video file(s), or a folder of videos: one shot each")
    parser.add_argument("--keypoints", nargs="+", required=True,
                        help="one keypoint file (COCO-17 .npz/.npy/.json) or OpenPose folder per footage, "
                             "or one folder holding <footage name>.npz/.npy/.json or <footage name>/")
    parser.add_argument("--init", nargs="+", help="initial SMPL estimates, paired like --keypoints")
    parser.add_argument("--smpl", help="your SMPL model file (default: the free body model)")
    parser.add_argument("--out", help=".blend file (one shot) or folder (default: next to the footage)")
    parser.add_argument("--bvh", help="also export the motion as BVH: a file (one shot) or folder")
    parser.add_argument("--fbx", help="also export the motion as FBX: a file (one shot) or folder")
    parser.add_argument("--retarget", metavar="CHARACTER.blend",
                        help="retarget onto the first armature of this .blend (BVH/FBX then export it)")
    parser.add_argument("--preset", help="bone-name preset for --retarget (e.g. rigify; default: automatic)")
    parser.add_argument("--mode", choices=("video", "frame"), default="video", help="engine mode")
    parser.add_argument("--frames", type=_frames_option, metavar="START:STOP|overlap",
                        help="footage frames to refine (0-based, STOP excluded), or 'overlap': the frames both "
                             "footage and keypoints cover (default: all; their counts must agree)")
    parser.add_argument("--iterations", type=int, help="engine outer iterations (default: its own)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: CUDA when available")
    parser.add_argument("--smoothing", type=float, default=1.0, help="scale of the temporal terms (0-2)")
    parser.add_argument("--keypoint-trust", type=float, default=1.0, help="scale of the keypoint term (0-2)")
    parser.add_argument("--worker", metavar="PYTHON",
                        help="run the engine in this Python (default: here when torch imports, else the "
                             "add-on's worker environment)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def _frames_option(text):
    if text == "overlap":
        return text
    try:
        start, stop = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:STOP (e.g. 0:96) or 'overlap'") from None
    if not 0 <= start < stop:
        raise argparse.ArgumentTypeError(f"{text!r} is empty or negative; give START:STOP with 0 <= START < STOP")
    return start, stop


def _blocked_by_a_file(path):
    """The first existing ancestor of ``path`` that is a regular file (then nothing can be written there)."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


def _videos(paths):
    shots = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise BuildError(f"--footage {path}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            shots += found
        elif path.is_file():
            shots.append(path)
        else:
            raise BuildError(f"--footage {path}: not found")
    stems = [p.stem for p in shots]
    if len(set(stems)) != len(stems):
        raise BuildError("two shots have the same name; outputs are named after the footage, rename one")
    return shots


def _paired(option, given, footage, suffixes):
    """One path per shot from ``given``: as many paths as shots, or one folder looked up by name."""
    given = [Path(p) for p in given]
    folder = given[0] if len(given) == 1 and given[0].is_dir() else None
    openpose = folder is not None and any(folder.glob("*_keypoints.json"))
    if len(given) == len(footage) and not (folder and not openpose):
        return given
    if folder is None:
        raise BuildError(f"{option}: give one per footage ({len(footage)}) or one folder")
    paired = []
    for shot in footage:
        candidates = [folder / (shot.stem + suffix) for suffix in suffixes] + [folder / shot.stem]
        match = next((c for c in candidates if c.exists()), None)
        if match is None:
            raise BuildError(f"{option} {folder}: nothing for shot '{shot.stem}' (looked for "
                             f"{shot.stem}{'/'.join(suffixes)} or {shot.stem}/)")
        paired.append(match)
    return paired


def _output(option, value, shot, suffix, several):
    """The output file of ``shot`` for an option naming a file (one shot) or a folder."""
    path = Path(value)
    if several or path.is_dir() or value.endswith(("/", os.sep)):
        return path / (shot.stem + suffix)
    if path.suffix.lower() != suffix:
        raise BuildError(f"{option} {value}: expected a {suffix} file")
    return path


def batch_shots(opts):
    """[{footage, keypoints, init, blend, bvh, fbx}] for the parsed options, outputs checked."""
    footage = _videos(opts.footage)
    keypoints = _paired("--keypoints", opts.keypoints, footage, KEYPOINT_SUFFIXES)
    inits = _paired("--init", opts.init, footage, INIT_SUFFIXES) if opts.init else [None] * len(footage)
    several = len(footage) > 1
    shots = []
    for shot, kp, init in zip(footage, keypoints, inits):
        outputs = {"blend": _output("--out", opts.out, shot, ".blend", several) if opts.out
                   else shot.with_suffix(".blend")}
        for kind in ("bvh", "fbx"):
            value = getattr(opts, kind)
            outputs[kind] = _output(f"--{kind}", value, shot, f".{kind}", several) if value else None
        shots.append(dict(footage=shot, keypoints=kp, init=init, **outputs))
    outputs = [s[k] for s in shots for k in ("blend", "bvh", "fbx") if s[k] is not None]
    for out in outputs:
        if blocker := _blocked_by_a_file(out):
            raise BuildError(f"cannot write {out}: {blocker} is a file, not a folder; choose outputs inside a folder")
    existing = [str(out) for out in outputs if out.exists()]
    if existing and not opts.force:
        raise BuildError(f"output exists: {', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}; "
                         "pass --force to overwrite or choose other outputs")
    return shots


def _addon_module(name):
    """scorehmr_blender.<name>, or a BuildError when the add-on has no such module yet."""
    try:
        return importlib.import_module(f"scorehmr_blender.{name}")
    except ModuleNotFoundError as ex:
        if ex.name == f"scorehmr_blender.{name}":
            raise BuildError(f"{name} is not available in this version of the add-on") from None
        raise


def _required_functions(opts):
    """The export / retarget functions the options need (checked before any shot runs)."""
    needs = {"bvh": ("export", "export_bvh"), "fbx": ("export", "export_fbx"), "retarget": ("retarget", "retarget")}
    found = {}
    for option, (module, function) in needs.items():
        if getattr(opts, option):
            fn = getattr(_addon_module(module), function, None)
            if fn is None:
                raise BuildError(f"--{option} is not available: scorehmr_blender.{module}.{function} is missing")
            found[option] = fn
    return found


def _register_addon(bpy):
    """Register this repository's add-on (an installed copy of it is disabled first)."""
    import addon_utils

    for name in list(bpy.context.preferences.addons.keys()):
        if name.split(".")[-1] == "refine_motion":
            addon_utils.disable(name, default_set=False)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    addon = importlib.import_module("scorehmr_blender")
    if not hasattr(bpy.types.Scene, "refine_motion"):
        addon.register()
    return addon


def _scene_rate(fps):
    """(fps, fps_base) for a frame rate: 30000/1001 -> (30, 1.001)."""
    whole = max(1, round(fps))
    return whole, (1.0 if abs(whole - fps) < 1e-6 else whole / fps)


def _append_armature(bpy, path):
    """Link the objects of a .blend into the scene; returns its first armature object."""
    path = Path(path)
    if not path.is_file():
        raise BuildError(f"--retarget {path}: file not found")
    with bpy.data.libraries.load(str(path), link=False) as (source, loaded):
        loaded.objects = list(source.objects)
    armatures = [obj for obj in loaded.objects if obj is not None and obj.type == 'ARMATURE']
    if not armatures:
        raise BuildError(f"--retarget {path.name}: has no armature object")
    for obj in loaded.objects:
        if obj is not None:
            bpy.context.scene.collection.objects.link(obj)
    return armatures[0]


def refine_shot(bpy, shot, opts, runner, functions):
    """Refine one shot in a fresh scene and write its outputs; returns a summary line."""
    import numpy as np

    from scorehmr_blender import engine_runner, refine

    started = time.time()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    context = bpy.context
    scene = context.scene
    settings = scene.refine_motion
    settings.footage_source, settings.footage_path = 'FILE', str(shot["footage"])
    settings.keypoints_source, settings.keypoints_path = 'FILE', str(shot["keypoints"])
    settings.init_path = str(shot["init"] or "")
    settings.mode = {"video": 'VIDEO', "frame": 'SINGLE_FRAME'}[opts.mode]
    settings.device = {None: 'AUTO', "cpu": 'CPU', "cuda": 'CUDA'}[opts.device]
    settings.smoothing = opts.smoothing * refine.DEFAULT_FACTOR
    settings.keypoint_trust = opts.keypoint_trust * refine.DEFAULT_FACTOR

    footage = refine.footage_of(context, settings)
    scene.render.fps, scene.render.fps_base = _scene_rate(footage.fps)
    scene.render.resolution_x, scene.render.resolution_y = footage.size
    scene.frame_start, scene.frame_end = 1, footage.frame_count
    scene.frame_current = 1
    start, stop = 0, footage.frame_count
    if opts.frames == "overlap":
        keypoints_io = engine_runner.backend_module("io.keypoints")
        stop = min(stop, keypoints_io.load_keypoints(shot["keypoints"]).report.frames)
    elif opts.frames is not None:
        start, stop = opts.frames
        if stop > footage.frame_count:
            raise BuildError(f"--frames {start}:{stop} runs past the footage's {footage.frame_count} frames")
    settings.frame_end, settings.frame_start = stop, start + 1   # scene frame 1 shows footage frame 0

    plan = refine.plan(context, settings, smpl_file=opts.smpl or "", iterations=opts.iterations)
    plan.request.partial = opts.frames is not None
    if opts.mode == "frame":  # the whole range, each frame on its own (the panel takes the current frame)
        plan.request.frames, plan.first_frame = (start, stop - 1), footage.start + start
    job = engine_runner.Job(plan.request, runner, plan.name)
    print(f"  engine: {runner.describe()}, job folder {job.folder}", flush=True)
    last = [0.0]

    def progress(done, total):
        if time.time() - last[0] > 5 or done == total:
            last[0] = time.time()
            print(f"  iteration {done}/{total}", flush=True)

    if job.run(on_progress=progress) != "done":
        raise BuildError(job.error or f"the engine run was {job.state}")
    imported = refine.import_result(context, plan, job.out_path)
    with np.load(job.out_path) as out:
        error = float(np.nanmean(out["reprojection_error_px"]))

    written = []
    exported = imported.armature
    if opts.retarget:
        exported = _append_armature(bpy, opts.retarget)
        try:
            functions["retarget"](imported.armature, exported, preset=opts.preset)
        except ValueError as ex:
            raise BuildError(f"retarget onto {exported.name}: {ex}") from None
    for kind in ("bvh", "fbx"):
        if shot[kind] is not None:
            shot[kind].parent.mkdir(parents=True, exist_ok=True)
            try:
                functions[kind](exported, str(shot[kind]), overwrite=opts.force)
            except (ValueError, FileExistsError, RuntimeError) as ex:
                raise BuildError(f"{kind.upper()} export: {ex}") from None
            written.append(shot[kind])
    shot["blend"].parent.mkdir(parents=True, exist_ok=True)
    if bpy.ops.wm.save_as_mainfile(filepath=str(shot["blend"])) != {'FINISHED'}:
        raise BuildError(f"could not save {shot['blend']}")
    written.insert(0, shot["blend"])
    return (f"{imported.frames.size} frames, reprojection error {error:.1f} px, {time.time() - started:.0f} s "
            f"-> {', '.join(str(p) for p in written)}")


def cmd_refine(args):
    opts = refine_parser().parse_args(args)
    if opts.preset and not opts.retarget:
        raise BuildError("--preset goes with --retarget")
    shots = batch_shots(opts)
    try:
        import bpy
    except ImportError:
        raise BuildError("batch refinement needs Blender: run blender -b -P build.py -- ..., or install the "
                         "bpy module (see requirements/dev.txt)") from None
    _register_addon(bpy)
    from scorehmr_blender import engine_runner

    functions = _required_functions(opts)
    try:
        runner = engine_runner.choose_runner("WORKER" if opts.worker else "AUTO", opts.worker or "")
    except engine_runner.RefineError as ex:
        raise BuildError(f"{ex} (or pass --worker PYTHON)") from None

    failed = []
    for number, shot in enumerate(shots, 1):
        name = shot["footage"].stem
        print(f"[{number}/{len(shots)}] {name}: refining {shot['footage']} with {shot['keypoints']}", flush=True)
        try:
            print(f"[{number}/{len(shots)}] {name}: {refine_shot(bpy, shot, opts, runner, functions)}", flush=True)
        except (BuildError, engine_runner.RefineError, RuntimeError, OSError) as ex:
            failed.append(name)
            print(f"[{number}/{len(shots)}] {name}: FAILED: {ex}", file=sys.stderr, flush=True)
    print(f"summary: {len(shots) - len(failed)} of {len(shots)} shots refined"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


COMMANDS = {"package": cmd_package, "refine": cmd_refine}


def main(argv=None):
    args = script_args(argv)
    if args[:1] == ["--"]:  # `python build.py -- --footage ...`
        args = args[1:]
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if args and args[0].startswith("--"):  # options first: batch refinement
        args = ["refine", *args]
    if not args or args[0] not in COMMANDS:
        if args:
            print(f"build.py: error: unknown command {args[0]!r}", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    try:
        return COMMANDS[args[0]](args[1:])
    except (BuildError, OSError) as ex:
        print(f"build.py: error: {ex}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    status = main()
    if "bpy" in sys.modules and not sys.modules["bpy"].app.binary_path:
        # The bpy module (not Blender) can crash while freeing itself at interpreter exit
        # (bpy 4.2 segfaults once the add-on was registered): all is written, leave directly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
