#!/usr/bin/env bash
# Rebuild the bundled checkpoints (see README.md): tiny byte-level Matrix Thinkers trained on
# the synthetic arithmetic task on CPU, MultiProbe head and vector-collapse head, seeds 0, 1, 2.
#
# Two trainings run at once (one per head, one thread each); each runs its three seeds in
# turn. Rerunning resumes an interrupted seed and skips finished ones; pass --no-resume in
# EXTRA to retrain from scratch:   EXTRA=--no-resume checkpoints/make.sh
# Logs go to $LOG_DIR (default /tmp); STEPS (default 1200) and OUT_DIR (default checkpoints)
# override the step count and where the checkpoints are written; SEEDS (default 0,1,2)
# and DATA (the --data source) the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-/tmp}
EXTRA=${EXTRA:-}
STEPS=${STEPS:-1200}
OUT_DIR=${OUT_DIR:-checkpoints}
SEEDS=${SEEDS:-0,1,2}
DATA=${DATA:-synthetic:n_items=10000,max_value=5,max_total=10}

COMMON=(
  --mat-dim 8 --layers 2 --heads 4 --iterations 4 --max-len 256
  --seq-len 256 --batch-size 8 --steps "$STEPS" --lr 0.05 --warmup 50
  --weight-decay 0.01 --grad-clip 1.0 --dropout 0.0
  --data "$DATA" --val-items 200 --eval-every 400
  --seed "$SEEDS" --device cpu --threads 1
)

# shellcheck disable=SC2086  # EXTRA is empty or one flag
ablate train --variant byte_frobenius_multiprobe "${COMMON[@]}" $EXTRA \
  --out "$OUT_DIR/multiprobe-seed{seed}" > "$LOG_DIR/ablate-train-multiprobe.log" 2>&1 &
multiprobe=$!
# shellcheck disable=SC2086
ablate train --variant round1_frobenius_collapse "${COMMON[@]}" $EXTRA \
  --out "$OUT_DIR/collapse-seed{seed}" > "$LOG_DIR/ablate-train-collapse.log" 2>&1 &
collapse=$!

status=0
wait "$multiprobe" || status=$?
wait "$collapse" || status=$?
tail -n 12 "$LOG_DIR/ablate-train-multiprobe.log" "$LOG_DIR/ablate-train-collapse.log"
exit "$status"
