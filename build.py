# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the Refine Motion extension zip, or refine shots headless.

    python build.py package [--out DIR] [--blender PATH]
        Stage the add-on with the engine package (backend/) and its requirement files inside it,
        then build refine_motion-<version>.zip with Blender's own `extension build` (which checks
        the manifest) and check it with `extension validate`; Blender is the executable given,
        Blender itself when this runs inside it, `blender` on PATH, or the copy of the tool
        shipped in the installed `bpy` module.

    blender -b -P build.py -- --footage SHOT.mp4 [--keypoints KP.json] [options]
    python build.py -- --footage ... (the same, with the bpy module)
    python build.py -- --result OUT.npz [--footage SHOT.mp4] --out SHOT.blend
        Batch mode: the add-on's scorehmr_blender.batch refines each shot (or imports an engine
        result as it is) into a .blend (and BVH / FBX); every argument of every shot is checked
        before any engine work.  --help after "--" lists the options.

    blender -b -P build.py -- --footage TAKES/ [--keypoints KP/] --out DIR --ray [--ray-address ADDRESS] [options]
        The same shots handed to `python -m backend batch`'s Ray runner in the worker Python:
        DIR/<clip>/ (its .blend, --bvh/--fbx, OUT.npz, clip.json) per clip and DIR/summary.json.

Inside Blender the arguments after "--" are this script's own.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MANIFEST = ROOT / "blender_manifest.toml"
ADDON_DIR = ROOT / "scorehmr_blender"
BACKEND_DIR = ROOT / "backend"
REQUIREMENT_FILES = ("engine.txt", "detect.txt", "constraints.txt")
MAX_FILE_BYTES = 20 * 1024 * 1024  # per file: the engine's weights are a few MB, torch must never be inside
ZIP_MODE = 0o644                   # readable by everyone, like any downloaded file

USAGE = """\
usage: python build.py package [--out DIR] [--blender PATH]
       blender -b -P build.py -- package [--out DIR]
       blender -b -P build.py -- --footage SHOT.mp4|FOLDER [--keypoints KP.json] [options]
       python build.py -- --footage SHOT.mp4|FOLDER [--keypoints KP.json] [options]
       python build.py -- --result OUT.npz [--footage SHOT.mp4] --out SHOT.blend
       python build.py -- --footage TAKES/ [--keypoints KP/] --out DIR --ray [--ray-address ADDRESS] [options]

commands:
  package      build and validate refine_motion-<version>.zip
  --footage    refine shots headless into .blend files, keypoints detected unless given
               (--help after -- for the options)
  --result     import engine results as they are into .blend files
  --ray        with --footage: hand the shots to python -m backend batch's Ray runner (docs/batch.md)"""


class BuildError(Exception):
    """A failure with a one-line message for the user."""


# --------------------------------------------------------------------------
# Package: what Blender's `extension build` lacks is the staging (the add-on folder is not the
# repository root, and the engine package and requirement files go inside it) and two checks
# of this project (no torch, no huge file).

def _skip(path):
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def package_files():
    """(source path, name inside the zip) pairs, sorted by zip name."""
    files = [(MANIFEST, "blender_manifest.toml")]
    # The worker environment's pinned requirements (Set Up Worker Environment installs them).
    files += [(ROOT / "requirements" / name, "requirements/" + name) for name in REQUIREMENT_FILES]
    files += [(path, path.relative_to(ADDON_DIR).as_posix()) for path in ADDON_DIR.rglob("*")
              if path.is_file() and not _skip(path.relative_to(ADDON_DIR))]
    backend = set(BACKEND_DIR.rglob("*.py")) | {p for p in (BACKEND_DIR / "assets").rglob("*") if p.is_file()}
    files += [(path, "backend/" + path.relative_to(BACKEND_DIR).as_posix()) for path in backend
              if not _skip(path.relative_to(BACKEND_DIR))]
    return sorted(files, key=lambda item: item[1])


def stage(folder):
    """Copy the package's files into ``folder`` as the zip will hold them."""
    for src, name in package_files():
        target = Path(folder) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)


def check_zip(zip_path):
    """This project's own rules on a built zip (Blender checks the rest); returns its manifest."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if any(part.lower() == "torch" or part.lower().startswith("torch-") for part in parts):
                raise BuildError(f"{zip_path.name}: must not bundle torch ({info.filename})")
            if info.file_size > MAX_FILE_BYTES:
                raise BuildError(f"{zip_path.name}: {info.filename} is {info.file_size / 2**20:.1f} MB "
                                 f"(limit {MAX_FILE_BYTES // 2**20} MB)")
        return tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))


def extension_tool(blender=None):
    """Blender's `extension` command as (command prefix, arguments every sub-command takes, description),
    or None.  Tried in order: the given Blender executable; Blender itself when this runs inside it;
    `blender` on PATH; the tool shipped in the `bpy` module of this Python (found without importing bpy)."""
    if blender is None and "bpy" in sys.modules:
        blender = sys.modules["bpy"].app.binary_path or None
    blender = blender or shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension"], [], blender
    spec = importlib.util.find_spec("bpy")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for cli in sorted(Path(root).glob("[0-9]*.[0-9]*/scripts/addons_core/bl_pkg/cli/blender_ext.py")):
            version_dir = cli.parents[4]
            tags = version_dir / "scripts/modules/_bpy_internal/extensions/tags.py"
            extra = ["--valid-tags", str(tags)] if tags.is_file() else []
            return [sys.executable, str(cli)], extra, f"bundled with the bpy {version_dir.name} module"
    return None


def run_extension_tool(tool, command, *args):
    """Run `extension <command> <args>`; BuildError with Blender's error lines when it fails."""
    prefix, extra, _ = tool
    try:
        proc = subprocess.run(prefix + [command, *map(str, args)] + extra, capture_output=True, text=True,
                              timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as ex:
        raise BuildError(f"could not run {prefix[0]}: {ex}") from None
    output = (proc.stdout + proc.stderr).strip()
    problems = [line.strip() for line in output.splitlines() if "ERROR" in line.upper()]
    if proc.returncode != 0 or problems:
        detail = " / ".join(problems) or (output.splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise BuildError(f"Blender's extension {command} failed: {detail}")


def manifest_id_version():
    try:
        with open(MANIFEST, "rb") as fh:
            manifest = tomllib.load(fh)
    except FileNotFoundError:
        raise BuildError(f"{MANIFEST} not found") from None
    except tomllib.TOMLDecodeError as ex:
        raise BuildError(f"{MANIFEST} is not valid TOML: {ex}") from None
    return manifest.get("id", "extension"), manifest.get("version", "0")


def build_package(out_dir, tool=None):
    """Build, check and return the path of refine_motion-<version>.zip (mode 644) in ``out_dir`` with
    ``tool`` (default: :func:`extension_tool`); nothing is left in ``out_dir`` when a step fails."""
    tool = tool or extension_tool()
    if tool is None:
        raise BuildError("building the extension needs Blender's `extension build`: pass --blender PATH, put "
                         "blender on PATH, or install the bpy module (pip install -r requirements/dev.txt)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / "{}-{}.zip".format(*manifest_id_version())
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out_dir) as work:
        source, built = Path(work) / "source", Path(work) / final.name
        stage(source)
        try:
            run_extension_tool(tool, "build", "--source-dir", source, "--output-filepath", built)
        except BuildError as ex:  # name the manifest the user edits, not its staged copy
            raise BuildError(str(ex).replace(str(source / "blender_manifest.toml"), str(MANIFEST))) from None
        run_extension_tool(tool, "validate", built)
        check_zip(built)
        os.chmod(built, ZIP_MODE)
        os.replace(built, final)
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
    parser.add_argument("--blender", help="Blender executable for `extension build/validate` (default: Blender "
                                          "running this, 'blender' on PATH, else the tool in the bpy module)")
    opts = parser.parse_args(args)
    if opts.blender and not (shutil.which(opts.blender) or Path(opts.blender).is_file()):
        raise BuildError(f"Blender executable not found: {opts.blender}")
    tool = extension_tool(opts.blender)
    zip_path = build_package(opts.out, tool)
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    print(f"built {zip_path}")
    print(f"  {manifest['name']} {manifest['version']} (id {manifest['id']}, "
          f"Blender {manifest['blender_version_min']}+)")
    print(f"  {len(infos)} files, {zip_path.stat().st_size / 1024:.1f} KiB compressed, "
          f"{sum(1 for i in infos if i.filename.startswith('backend/'))} in backend/")
    print(f"  Blender's extension build and validate: passed ({tool[2]})")
    return 0


def _backend_on_path():
    """Make this repository's engine package importable (its numpy-free parts: the options, the contract's
    frame parser) before Blender registers the add-on."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _frames_option(text):
    """--frames: the contract's parser ('START:STOP' footage frames -> FrameRange, or 'overlap'); an
    empty or negative range is refused here, before Blender loads anything."""
    _backend_on_path()
    from backend.contract.errors import InputError
    from backend.contract.frames import parse_frames

    try:
        frames = parse_frames(text)
    except InputError as ex:
        raise argparse.ArgumentTypeError(str(ex)) from None
    if frames != "overlap" and not 0 <= frames.start < frames.stop:
        raise argparse.ArgumentTypeError(f"{text!r} is empty or negative; give START:STOP with 0 <= START < STOP")
    return frames


def _number(text, accept, what):
    """``text`` as a float for argparse, or an error saying it is not a number / ``what`` it must be."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"{text!r} {what}")
    return value


def _positive(text):
    return _number(text, lambda v: 0 < v < float("inf"), "must be positive")


def _field_of_view(text):
    value = _positive(text)
    if value >= 180:
        raise argparse.ArgumentTypeError(f"{text!r} must be below 180 degrees")
    return value


def _first_frame(text):
    """--first-frame: 'auto' or a frame number >= 0."""
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or a frame number (0, 1, ...)")
    return int(text)


def _scale(text):
    return _number(text, lambda v: 0 <= v <= 2, "is outside 0-2")


def refine_parser():
    _backend_on_path()
    from backend.contract.batch_options import shared_parser

    parser = argparse.ArgumentParser(
        prog="build.py --", parents=[shared_parser()],
        description="Refine shots headless (Blender or the bpy module) into .blend files, or import engine results "
                    "(--result); with --ray, hand the clips to python -m backend batch's Ray runner.")
    parser.add_argument("--footage", nargs="+", help="video file(s), or a folder of videos: one shot each")
    parser.add_argument("--keypoints", nargs="+",
                        help="one keypoint file (COCO-17 .npz/.npy/.json) or OpenPose folder per footage, "
                             "or one folder holding <footage name>.npz/.npy/.json or <footage name>/ "
                             "(default: detected in each footage with BlazePose)")
    parser.add_argument("--result", nargs="+", metavar="OUT.npz",
                        help="import these engine results as they are (no engine run); --footage, one per "
                             "result, is optional and shown behind the camera")
    parser.add_argument("--init", nargs="+", help="initial SMPL estimates, paired like --keypoints")
    parser.add_argument("--out", help=".blend file (one shot) or folder (default: next to the footage); with --ray "
                                      "the runner's folder: OUT/<clip>/ per clip and OUT/summary.json")
    for kind in ("BVH", "FBX"):
        parser.add_argument(f"--{kind.lower()}", nargs="?", const="", metavar="PATH",
                            help=f"also export the motion as {kind}: a file (one shot) or folder (no PATH: beside "
                                 "each .blend; with --ray: OUT/<clip>/)")
    parser.add_argument("--in-place", action="store_true",
                        help="with --retarget: keep the character over its rest position (only its height follows "
                             "the motion) instead of travelling like the SMPL rig")
    parser.add_argument("--frames", type=_frames_option, metavar="START:STOP|overlap",
                        help="footage frames to refine (0-based, STOP excluded), or 'overlap': the frames both "
                             "footage and keypoints cover (default: all; their counts must agree)")
    parser.add_argument("--first-frame", type=_first_frame, default="auto", metavar="N|auto",
                        help="the keypoint files' number of the footage's first frame, e.g. 1 for OpenPose files of "
                             "images numbered from 1 (default auto: 1 when the files are numbered 1..F over F "
                             "footage frames, else 0)")
    parser.add_argument("--focal-length", type=_positive, metavar="PX",
                        help="focal length in pixels (default: the keypoint file's, else from --fov)")
    parser.add_argument("--fov", type=_field_of_view, metavar="DEG",
                        help="field of view in degrees across the image's long side (default: the keypoint "
                             "file's focal length, else 55)")
    parser.add_argument("--smoothing", type=_scale, help="scale of the temporal terms (0-2, default 1)")
    parser.add_argument("--keypoint-trust", type=_scale, help="scale of the keypoint term (0-2, default 1)")
    parser.add_argument("--height", type=_positive, metavar="METRES",
                        help="the person's known height, e.g. 1.78 (default: estimated, with the body's distance)")
    parser.add_argument("--worker", metavar="PYTHON",
                        help="run the engine in this Python (default: here when torch imports, else the "
                             "add-on's worker environment); with --ray, the runner (it needs ray there too)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--absolute-paths", action="store_true",
                        help="store the footage's absolute path in the .blend (default: relative to the .blend, "
                             "'//...', so the folder can move with its footage)")
    parser.add_argument("--ray", action="store_true",
                        help="hand the clips to python -m backend batch's Ray runner (a local cluster, or "
                             "--ray-address's) in the worker Python: OUT/<clip>/ with its .blend (and --bvh/--fbx) "
                             "per clip, OUT/summary.json; see docs/batch.md")
    return parser


def _register_addon(bpy):
    """Register this repository's add-on (an installed copy of it is disabled first)."""
    import addon_utils

    for name in list(bpy.context.preferences.addons.keys()):
        if name.split(".")[-1] == "refine_motion":
            addon_utils.disable(name, default_set=False)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import scorehmr_blender

    if not hasattr(bpy.types.Scene, "refine_motion"):
        scorehmr_blender.register()


def cmd_refine(args):
    opts = refine_parser().parse_args(args)
    try:
        import bpy
    except ImportError:
        raise BuildError("batch refinement needs Blender: run blender -b -P build.py -- ..., or install the "
                         "bpy module (see requirements/dev.txt)") from None
    _register_addon(bpy)
    from scorehmr_blender import batch

    try:
        return batch.run(batch.Options(**vars(opts)))
    except batch.BatchError as ex:
        raise BuildError(str(ex)) from None


COMMANDS = {"package": cmd_package, "refine": cmd_refine}


def main(argv=None):
    args = script_args(argv)
    after_separator = args[:1] == ["--"] or "bpy" in sys.modules  # `python build.py -- ...`, or inside Blender
    if args[:1] == ["--"]:
        args = args[1:]
    if args[:1] in (["-h"], ["--help"]):
        if after_separator:  # the batch's options, as the general usage says
            refine_parser().print_help()
        else:
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
