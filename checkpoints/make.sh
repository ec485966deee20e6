#!/usr/bin/env bash
# Rebuild the bundled checkpoints (see README.md): tiny byte-level Matrix Thinkers (d = 16)
# trained on the synthetic arithmetic task on CPU, MultiProbe head and vector-collapse
# head, seeds 0, 1, 2. Peak learning rate 0.05 for the multi-probe head, 0.025 for the
# collapse head (README.md says why).
#
# One training per head, one thread each, each running its three seeds in turn. JOBS=2
# (default) runs the two heads at once; JOBS=1 runs them one after the other (for a
# shared machine). Either way every checkpoint is the same: each training is seeded and
# single-threaded. Rerunning resumes an interrupted seed and skips finished ones; pass
# --no-resume in EXTRA to retrain from scratch:   EXTRA=--no-resume checkpoints/make.sh
# Logs go to $LOG_DIR (default /tmp); STEPS (default 1200) and OUT_DIR (default
# checkpoints) override the step count and where the checkpoints are written; SEEDS
# (default 0,1,2) and DATA (the --data source) the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-/tmp}
EXTRA=${EXTRA:-}
STEPS=${STEPS:-1200}
OUT_DIR=${OUT_DIR:-checkpoints}
SEEDS=${SEEDS:-0,1,2}
DATA=${DATA:-synthetic:n_items=10000,max_value=5,max_total=10}
JOBS=${JOBS:-2}

MODEL=(
  --mat-dim 16 --layers 2 --heads 4 --iterations 4 --max-len 256
  --seq-len 256 --batch-size 8 --steps "$STEPS"
)
REST=(
  --warmup 50 --weight-decay 0.01 --grad-clip 1.0 --dropout 0.0
  --data "$DATA" --val-items 200 --eval-every 400
  --seed "$SEEDS" --device cpu --threads 1
)

train_head() {  # train_head VARIANT NAME LR
  # shellcheck disable=SC2086  # EXTRA is empty or one flag
  ablate train --variant "$1" "${MODEL[@]}" --lr "$3" "${REST[@]}" $EXTRA \
    --out "$OUT_DIR/$2-seed{seed}" > "$LOG_DIR/ablate-train-$2.log" 2>&1
}

status=0
case "$JOBS" in
  1)
    train_head byte_frobenius_multiprobe multiprobe 0.05 || status=$?
    train_head round1_frobenius_collapse collapse 0.025 || status=$?
    ;;
  2)
    train_head byte_frobenius_multiprobe multiprobe 0.05 &
    multiprobe=$!
    train_head round1_frobenius_collapse collapse 0.025 &
    collapse=$!
    wait "$multiprobe" || status=$?
    wait "$collapse" || status=$?
    ;;
  *) echo "make.sh: JOBS must be 1 or 2, not '$JOBS'" >&2; exit 2 ;;
esac
tail -n 12 "$LOG_DIR/ablate-train-multiprobe.log" "$LOG_DIR/ablate-train-collapse.log"
exit "$status"
