#!/bin/bash
# Call 17 (2026-12-04, 3rd session): llama3-8b's decode attention inside the step, split and
# merge apart. abl = main cac53ca + TIDAL_SKIP (ops of a layer) + TIDAL_SKIP_SPLIT / _MERGE and
# TIDAL_SPLIT_PLAIN / TIDAL_MERGE_PLAIN (an ordinary launch instead of a programmatic one).
set -u
O=/tmp/o17; mkdir -p $O
trap 'tar -C /tmp/o17 -cJf $OUT/o17.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/all16.tar.xz -C /tmp/x lib && tar -xJf .carry/abl17.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
t0=$(date +%s)
row() { grep -E "^ +NVIDIA" "$1" | awk -v t="$2" '{printf "%-12s %s %s %s %s ms=%s floor=%s\n", t, $3, $4, $6, $7, $10, $(NF-5)}'; }
run() { env $2 /tmp/x/abl/build/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-kv-head > $O/a_$1.txt 2>&1; row $O/a_$1.txt $1; }
for r in 1 2; do
  run none$r X=0; run nosplit$r TIDAL_SKIP_SPLIT=1; run nomerge$r TIDAL_SKIP_MERGE=1
  run splitpl$r TIDAL_SPLIT_PLAIN=1; run mergepl$r TIDAL_MERGE_PLAIN=1; run noattn$r TIDAL_SKIP=attn
  run noo$r TIDAL_SKIP=o; run noattn_o$r TIDAL_SKIP=attn,o
done
echo "done $(( $(date +%s) - t0 )) s"
