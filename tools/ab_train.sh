#!/usr/bin/env bash
# Which of two builds (or settings) fine-tunes faster, on a noisy machine: `graft train` runs
# of each alternating, ROUNDS times, each the fine-tuning benchmark's recipe (EfficientNet-
# Lite0, batch 32, every layer, 4 epochs of 5 steps on target/bench_train/sub16, which
# `tools/bench_train.py` writes) with the malloc settings the benchmarks use; each run's
# median images/s over its steps from the 11th on (the first epoch's warm-up left out).
#
#   tools/ab_train.sh ROUNDS 'LABEL|BINARY|EXTRA ARGS|ENV' ...
#
# e.g. cp target/release/graft /tmp/before (then rebuild):
#   tools/ab_train.sh 3 'before|/tmp/before|--precision bf16|' 'after|target/release/graft|--precision bf16|'
#   tools/ab_train.sh 3 'graft|target/release/graft||' 'burn|target/release/graft||GRAFT_FAST_CPU=0'
set -euo pipefail
rounds=$1
shift
data=${AB_DATA:-target/bench_train/sub16}
[ -d "$data" ] || { echo "no $data: run tools/bench_train.py first" >&2; exit 1; }
export MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
for r in $(seq 1 "$rounds"); do
    for spec in "$@"; do
        IFS='|' read -r label bin args envs <<<"$spec"
        # shellcheck disable=SC2086  # the extra arguments and settings are lists
        env $envs "$bin" train --model default --data "$data" --epochs 4 --batch 32 \
            --lr 0.0001 --device cpu --no-cache $args \
            --export "$report/model.onnx" --report "$report/report.json" >/dev/null 2>&1
        python3 - "$report/report.json" "$label" "$r" <<'PY'
import json, statistics, sys
steps = json.load(open(sys.argv[1]))["history"]["iterations"][10:]
print(f"{sys.argv[2]} round {sys.argv[3]}: "
      f"{statistics.median(s['images_per_sec'] for s in steps):.2f} images/s")
PY
    done
done
