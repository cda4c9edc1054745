#!/usr/bin/env bash
# Run the add-on tests against Blender 4.2 LTS (the oldest Blender the
# manifest allows), using the `bpy` module from PyPI in its own venv.
#
#   bash scripts/test_blender42.sh            # create/update .venv-bpy42, run tests
#   BPY42_VERSION=4.2.20 bash scripts/test_blender42.sh
#
# torch goes in first and only as the CPU build ("+cpu" exists only in the
# local wheel folder / CPU index, so a resolver can never swap in CUDA).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv-bpy42
PY=python3.11
TORCH_REQ="torch==2.13.0+cpu"

if [[ -z "${BPY42_VERSION:-}" ]]; then
    # Newest 4.2.x the registry offers.
    BPY42_VERSION=$("$PY" -m pip index versions bpy 2>/dev/null \
        | sed -n 's/^Available versions: //p' | tr ',' '\n' | tr -d ' ' \
        | grep -E '^4\.2\.[0-9]+$' | sort -t. -k3,3n | tail -n1 || true)
    BPY42_VERSION=${BPY42_VERSION:-4.2.*}
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

"$VPY" -m pip install -q "$TORCH_REQ"
"$VPY" -m pip install -q "bpy==$BPY42_VERSION" "numpy<2" pytest
# The import tests pose the real body model (tests/result_fixture.py), which goes
# through smplx; its only dependencies (numpy, torch) are already in, so --no-deps.
# The refine tests write their tiny footage with OpenCV (numpy is its only dependency).
"$VPY" -m pip install -q --no-deps "$(grep -E '^smplx==' requirements/engine.txt)" \
    "$(grep -E '^opencv-python-headless==' requirements/engine.txt)"

"$VPY" -c 'import bpy; print("bpy", bpy.app.version_string)'
exec "$VPY" -m pytest -q tests/test_addon*.py tests/test_build_package.py tests/test_build_batch.py "$@"
