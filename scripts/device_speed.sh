#!/usr/bin/env bash
# Every engine mode and the batch on the GPU, with the CPU (1 thread) figures of the same run beside them
# (scripts/device_speed.py; issue 21 item 2).  Under 5 minutes on one GPU machine with the defaults.
#
#   run: OUT=$OUT bash scripts/device_speed.sh
#   carry: out/pylib/smplx   (cp -r .venv/lib/python3.11/site-packages/smplx out/pylib/)
#   here, to check the script: DEVICE=cpu FRAMES=8 VIEWS_FRAMES=4 BATCH_CLIPS=2 OUT=/tmp/ds bash scripts/device_speed.sh
#
# ray is not on the device machine (too big to carry): the batch row then runs the clips one after
# another in one process and says so.  Env: DEVICE (cuda), FRAMES (96), VIEWS_FRAMES (48), BATCH_CLIPS (8),
# BATCH_FRAMES (24), BASELINES (1: add the baselines), PY (python3).  Writes $OUT/device_speed.md and .json
# (copy the table into docs/batch.md's GPU section, naming the card it prints).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the output folder}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/out/pylib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
extra=()
if [ "${BASELINES:-1}" = 1 ]; then extra+=(--baselines); fi
timeout 290 "$PY" scripts/device_speed.py --device "${DEVICE:-cuda}" --frames "${FRAMES:-96}" \
    --views-frames "${VIEWS_FRAMES:-48}" --batch-clips "${BATCH_CLIPS:-8}" --batch-frames "${BATCH_FRAMES:-24}" \
    "${extra[@]}" --markdown "$OUT/device_speed.md"
