#!/usr/bin/env bash
# Trains prior variants in parallel on one GPU machine (issue 12 item 2) and prints each one's
# validation eps-MSE over the loop's timesteps (t <= 100) and over all timesteps.
#
# Needs (carried, ignored paths): out/pack_train.npz (python -m lab train pack --out out/pack_train.npz
# --stride 4 --float16) and out/pylib/smplx (a copy of the pure-python smplx package: cp -r
# .venv/lib/python3.11/site-packages/smplx out/pylib/).  Everything else (torch, numpy, scipy, tqdm) is
# on the machine.  Observations are simulated on the CPU (THREADS cores per variant), the denoiser
# trains on DEVICE.  Outputs: $OUT/<variant>/prior.pt, $OUT/<variant>.log.
#
#   SECONDS_PER_VARIANT=400 STEPS=6000 BATCH=1024 bash lab/scripts/device_train_prior.sh
#   (CPU smoke test: DEVICE=cpu STEPS=20 BATCH=64 THREADS=1 OUT=/tmp/x bash lab/scripts/device_train_prior.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT to the output folder}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-6000}
BATCH=${BATCH:-1024}
LR=${LR:-6e-4}
THREADS=${THREADS:-4}
SECONDS_PER_VARIANT=${SECONDS_PER_VARIANT:-400}
PACK=${PACK:-out/pack_train.npz}
export PYTHONPATH="$PWD/out/pylib${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

# name | extra arguments.  full_t: the committed configuration (t over 0..999) at this batch and budget,
# the control for the others.
VARIANTS=${VARIANTS:-"full_t tmax200 tmax200_w1024 tmax200_w1024_cliff"}
args_of() {
  case $1 in
    full_t) echo "" ;;
    tmax200) echo "--t-max 200" ;;
    tmax200_w1024) echo "--t-max 200 --width 1024" ;;
    tmax200_w1024_cliff) echo "--t-max 200 --width 1024 --context features+camera" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

$PY -c "import torch, smplx, tqdm, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ -f "$PACK" ] || { echo "missing $PACK" >&2; exit 2; }
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)   # training states (model, EMA, optimiser) stay out of $OUT: only the priors come back
pids=()
for v in $VARIANTS; do
  mkdir -p "$OUT/$v"
  # shellcheck disable=SC2046
  $PY -m lab train prior --dataset "$PACK" --seed 0 --parameterisation v --steps "$STEPS" \
      --batch "$BATCH" --prior-lr "$LR" --device "$DEVICE" --threads "$THREADS" \
      --max-seconds "$SECONDS_PER_VARIANT" --checkpoint "$SCRATCH/$v.state" --checkpoint-every 1000 \
      --out "$OUT/$v" $(args_of "$v") >"$OUT/$v.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for v in $VARIANTS; do
  echo "== $v"
  grep -E "stopping at|Error|error" "$OUT/$v.log" | tail -3 || true
  $PY - "$OUT/$v/prior.pt" <<'PYEOF' || status=1
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
m = ck["meta"]
print(f"steps {m['steps_done']} in {m['seconds']} s, hidden {ck['config']['hidden']}, layout {m['context_layout']}, "
      f"t_max {m['t_max']}: val eps-MSE t<=100 {m['val']['val_loss_t100']:.4f}, all t {m['val']['val_loss']:.4f}, "
      f"round trip max {m['val']['roundtrip_max_abs']:.2e}")
PYEOF
done
ls -la "$OUT"/*/prior.pt
echo "== examples/shot, frame mode, 32 frames (engine loads each prior; the committed one first)"
priors=()
for v in $VARIANTS; do priors+=("$OUT/$v/prior.pt"); done
$PY lab/scripts/prior_shot_check.py backend/assets/prior.pt "${priors[@]}" --device cpu || status=1
rm -rf "$SCRATCH"
exit $status
