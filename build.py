# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch entry point for Refine Motion.

    python build.py package [--out DIR] [--blender PATH] [--no-blender-validate]
        Build the installable extension zip refine_motion-<version>.zip and
        validate it: manifest fields, zip contents, then Blender's own
        `extension validate` (from a Blender executable, or the copy shipped
        in an installed `bpy` module) when one is available.

The same file is meant to run inside Blender later, as
    blender -b -P build.py -- <args>
where the arguments after "--" are this script's own.
"""

import argparse
import importlib.util
import os
import re
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

commands:
  package   build and validate refine_motion-<version>.zip"""


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


COMMANDS = {"package": cmd_package}


def main(argv=None):
    args = script_args(argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
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
    sys.exit(main())
