#!/usr/bin/env bash
# Run the add-on tests on an older Blender LTS through the `bpy` module from PyPI, in its own venv
# (created on first use; the newest Blender, bpy 5.0.1, runs in the main .venv).
#
#   bash scripts/test_blender.sh 4.2 [PYTEST_ARGS...]   # .venv-bpy42, bpy 4.2.23 (the manifest's minimum)
#   bash scripts/test_blender.sh 4.5 [PYTEST_ARGS...]   # .venv-bpy45, bpy 4.5.15 (first LTS with slotted actions)
#   bash scripts/test_blender.sh 4.2 --setup-only       # only make the venv
# `make test` passes `-m blender_versions`: only the tests of what differs between versions, in one process per version
# (4.2 and 4.5 at once, each in its own temporary folder) beside the main suite's two workers.
set -euo pipefail
cd "$(dirname "$0")/.."

series=${1:?usage: scripts/test_blender.sh 4.2|4.5 [pytest args]}
shift
case "$series" in
    4.2) bpy_pin=bpy==4.2.23 ;;
    4.5) bpy_pin=bpy==4.5.15 ;;
    *) echo "test_blender: no pinned bpy for Blender $series (known: 4.2, 4.5)" >&2; exit 2 ;;
esac
venv=.venv-bpy${series/./}

bash scripts/setup_venv.sh "$venv" requirements/blender-lts.txt "$bpy_pin"
[[ "${1:-}" == "--setup-only" ]] && exit 0
"$venv/bin/python" -c 'import bpy; print("bpy", bpy.app.version_string)'
exec "$venv/bin/python" -m pytest -q tests/addon tests/shipping/test_build_package.py tests/shipping/test_build_batch.py \
    "$@"
