#!/usr/bin/env bash
# Create (or reuse) a virtual environment with pinned dependencies.
#   bash scripts/setup_venv.sh VENV_DIR REQUIREMENTS_FILE
# torch goes in first, alone and pinned: on these machines `torch==2.13.0` is the local
# CPU wheel, and the constraint keeps every later resolver from swapping in a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
req=${2:-requirements/dev.txt}

py=${PYTHON:-}
if [[ -z "$py" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            py=$candidate; break
        fi
    done
fi
[[ -n "$py" ]] || { echo "setup: Python 3.11 is required (bpy wheels exist only for 3.11); set PYTHON=/path/to/python3.11" >&2; exit 1; }

stamp="$venv/.installed-$(cat "$req" requirements/*.txt | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
    exit 0
fi
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
echo "setup: installing pinned dependencies into $venv (first run downloads a few hundred MB)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" -c requirements/constraints.txt
# The detector (mediapipe): --no-deps, its real run-time needs are pinned in the file (see there).
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r requirements/detect.txt -c requirements/constraints.txt
rm -f "$venv"/.installed-*
touch "$stamp"
