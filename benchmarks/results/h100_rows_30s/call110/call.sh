#!/bin/bash
# Call 110 (thirtieth session): k109 again; r = rows alone (TIDAL_GEMV_EARLY=0 TIDAL_ATTN_ROWS=1) vs m, 3 rounds.
source launch/device_call.sh o110 k109:k
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name --format=csv,noheader
declare -A ENV=([m]="TIDAL_GEMV_EARLY=0 TIDAL_ATTN_ROWS=0" [r]="TIDAL_GEMV_EARLY=0 TIDAL_ATTN_ROWS=1")
b() { env ${ENV[$1]} timeout 60 $K/launch/tidal bench --preset $2 --budget 2048 --context $3 --policy $4 --granularity $5 --no-breakdown > $O/$6.txt 2>&1
  el "$6 rc=$?"; row $O/$6.txt "$6"; }
for i in 1 2 3; do
  for v in r m; do
    b $v llama2-7b 10K,32K,100K tidal per-query-head l2_${v}_$i
    b $v llama3-8b 32K,100K tidal per-query-head l3_${v}_$i
  done
done
el done
