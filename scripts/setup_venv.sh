#!/usr/bin/env bash
# Create (or reuse) a virtual environment with pinned dependencies.
#   bash scripts/setup_venv.sh VENV_DIR REQUIREMENTS_FILE [EXTRA_REQUIREMENT...]
# torch goes in first, alone, as the CPU build ("+cpu") of the version requirements/constraints.txt
# pins; that constraint on every later install keeps any resolver from swapping in another build.
# (constraints.txt itself names no build: the add-on's worker set-up reads it on users' machines.)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
req=${2:-requirements/dev.txt}
extra=("${@:3}")

py=${PYTHON:-}
if [[ -z "$py" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            py=$candidate; break
        fi
    done
fi
[[ -n "$py" ]] || { echo "setup: Python 3.11 is required (bpy wheels exist only for 3.11); set PYTHON=/path/to/python3.11" >&2; exit 1; }

stamp="$venv/.installed-$( (cat "$req" requirements/*.txt; echo "${extra[@]}") | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
    exit 0
fi
[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
echo "setup: installing pinned dependencies into $venv (first run downloads a few hundred MB)"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check -c requirements/constraints.txt)
"${pip[@]}" "$(grep -E '^torch==' requirements/constraints.txt)+cpu"
"${pip[@]}" -r "$req" "${extra[@]}"
# The detector (mediapipe): --no-deps, its real run-time needs are pinned in the file (see there).
"${pip[@]}" --no-deps -r requirements/detect.txt
rm -f "$venv"/.installed-*
touch "$stamp"
