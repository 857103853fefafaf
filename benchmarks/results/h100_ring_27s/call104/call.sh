#!/bin/bash
# Call 104 (twenty-seventh session; any Hopper card): k104 = branch ring afbdeba (main 217a590 + the
# SIMT kernel's cp.async ring, 1 stage by default for lists-only launches; TIDAL_ATTN_RING=0 is
# main's path). Every GPU test binary (the decode-attention test runs ring depths 0, 1, 2 and the
# default), the mixed-device job, then A/B rows (R=0 against the default, two rounds) and the ring
# on every SIMT launch (TIDAL_ATTN_RING_ALL=1, R=1, 2).
source launch/device_call.sh o104 k104:k
O=$OUT/o104; mkdir -p $O
K=/tmp/k/build
[[ -e /work/l26 ]] || ln -sfn "$PWD" /work/l26
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
b() { env $1 timeout 60 $K/launch/tidal bench --preset $2 --budget 2048 --context 10K,32K,100K --policy $3 --granularity per-query-head --no-breakdown > $O/$4.txt 2>&1
  el "$4 rc=$?"; row $O/$4.txt "$4"; }
round() {
  b TIDAL_ATTN_RING=0 llama2-7b full,tidal l2_r0_$1
  b TIDAL_ATTN_RING_DEFAULT=1 llama2-7b full,tidal l2_def_$1
  b TIDAL_ATTN_RING=0 llama3-8b tidal l3_r0_$1
  b TIDAL_ATTN_RING_DEFAULT=1 llama3-8b tidal l3_def_$1
}
round 1
TIDAL_PYTHON=/bin/false timeout 330 bash launch/gpu_suite.sh $K $O/suite tests > /dev/null 2>&1
el "gpu_suite rc=$?"; tail -1 $O/suite/summary.txt; grep rc= $O/suite/summary.txt | grep -v "failed=0 " | head
round 2
b "TIDAL_ATTN_RING_ALL=1 TIDAL_ATTN_RING=1" llama2-7b full,tidal l2_all1
b "TIDAL_ATTN_RING_ALL=1 TIDAL_ATTN_RING=2" llama2-7b full,tidal l2_all2
G="$K/launch/tidal generate --preset tiny --prompt-ids 1,5,9 --max-new-tokens 4 --temperature 0 --print-ids --tp 2 --dtype f32 --device"
timeout 60 mpirun -np 1 --oversubscribe --allow-run-as-root $G cuda : -np 1 $G cpu > $O/mixed_device.txt 2>&1
el "mixed devices rc=$? (want 1, not 124)"; grep -c "ranks differ in --device" $O/mixed_device.txt
el done
