#!/usr/bin/env bash
# Trains the motion prior (backend.models.motion) on the device machine in about 7 minutes.
#
#   run: bash lab/scripts/device_train_motion.sh      carry: cache/pack_motion.npz
#   (the pack: python -m lab train pack-motion --out cache/pack_motion.npz)
#
# A 60-step timing run sizes --steps to the time budget (so the cosine schedule ends where the run
# does); the main run is then an ordinary, reproducible `train motion-prior` command with that step
# count (printed and stored in the checkpoint's meta), with --time-limit as a safety net.  The EMA
# weights go to $OUT/motion_prior.pt (~13 MiB) with $OUT/motion_prior.json (validation loss).
# Env: PACK, BUDGET_S (training seconds, default 400), BATCH (1024), SEED (0), DEVICE (cuda), PYTHON (python3).
set -euo pipefail
PACK=${PACK:-cache/pack_motion.npz}
BUDGET_S=${BUDGET_S:-400}
BATCH=${BATCH:-1024}
SEED=${SEED:-0}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-out/device_motion}
mkdir -p "$OUT" out/motion_timing
$PYTHON - <<'PY'
import torch, numpy
print("torch", torch.__version__, "numpy", numpy.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
$PYTHON -m lab train motion-prior --dataset "$PACK" --device "$DEVICE" --batch "$BATCH" --seed "$SEED" \
    --steps 60 --log-every 20 --out out/motion_timing --no-validation | tee out/motion_timing/log.txt
STEPS=$($PYTHON - "$BUDGET_S" <<'PY'
import json, sys
budget = float(sys.argv[1])
rows = [json.loads(l) for l in open("out/motion_timing/log.txt") if l.startswith('{"step"')]
a, b = rows[1], rows[-1]                       # skip step 0 (start-up, kernel compilation)
per_step = (b["seconds"] - a["seconds"]) / (b["step"] - a["step"])
print(max(100, int(0.95 * budget / per_step)))
PY
)
echo "timing: $STEPS steps fit in ${BUDGET_S}s"
$PYTHON -m lab train motion-prior --dataset "$PACK" --device "$DEVICE" --batch "$BATCH" --seed "$SEED" \
    --steps "$STEPS" --lr 4e-4 --log-every 500 --time-limit $((BUDGET_S + 60)) \
    --checkpoint out/motion_train.state --checkpoint-every 2000 --resume --out "$OUT"
ls -la "$OUT"
