#!/usr/bin/env bash
# The ablation (python -m lab ablate) on the 16-core device machine: worker processes over the
# (variant, setting) tuning jobs and the (condition, seed) report jobs, one thread each, on the CPU (the
# same arithmetic as on a laptop; the loop's small batches gain little from the GPU).
#
#   run: OUT=$OUT bash lab/scripts/device_ablate.sh
#   carry: cache/dataset/cmu_smpl_val.npz out/pylib/smplx   (cp -r .venv/lib/python3.11/site-packages/smplx out/pylib/)
#
# Everything else (torch, numpy, scipy) is on the machine.  Env: FRAMES (96), SEEDS ("0 1 2 3 4"),
# GRID (small), WORKERS (15), PY (python3).  Writes $OUT/ablation.md and .json (copy them to docs/).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the output folder}
PY=${PY:-python3}
export PYTHONPATH="$PWD/out/pylib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# shellcheck disable=SC2086
$PY -m lab ablate --frames "${FRAMES:-96}" --seeds ${SEEDS:-0 1 2 3 4} --grid "${GRID:-small}" \
    --workers "${WORKERS:-15}" --threads 1 --device cpu --dataset cache/dataset --out "$OUT"
