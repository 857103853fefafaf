#!/bin/bash
# Call 69 (2026-12-06, sixteenth session, an H200): m = main bdae99e's GPU code (main fe44f5c
# changes no GPU code after it); p = next-s16 295a542 = main + pending/0001 (the SIMT kernel's
# one-head runs merge in thread-block clusters; TIDAL_SIMT_CLUSTER=0 keeps the own merge) + two
# tidies. kernel_bench attention m / p, llama2-7b steps m / p / p with the trigger at the exit
# (interleaved), then issue 9's suite on p (with TIDAL_SIMT_CLUSTER=0 if p's steps were not
# faster than m's; H200 only), then every GPU test on p in the time left, then llama3-8b steps.
source launch/device_call.sh o69 mqs:x
export LD_LIBRARY_PATH=/tmp/x/m/lib:$LD_LIBRARY_PATH
M=/tmp/x/m/build P=/tmp/x/q/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for sh in h=32/32 h=32/8; do for v in m p; do if [[ $v == m ]]; then F=$M; else F=$P; fi
  timeout 60 $F/benchmarks/kernel_bench --graph-calls 32 --budget-ms 20 --op decode_attention --shape $sh >> $O/kb_$v.txt 2>&1; done; done
paste <(grep -E "^  decode_attention" $O/kb_m.txt | awk '{print $(NF-5)}') <(grep -E "^  decode_attention" $O/kb_p.txt | awk '{s=""; for(i=3;i<=NF-7;i++) s=s" "$i; print $(NF-5), $(NF-3), $NF, s}')
el "kernel_bench done"
n=0
for v in m p x m p; do n=$((n+1)); F=$M; [[ $v == m ]] || F=$P; envs=""; [[ $v == x ]] && envs="TIDAL_ATTN_TRIGGER=exit"
  env $envs timeout 40 $F/launch/tidal bench --preset llama2-7b --budget 2048 --context 10K,100K --policy full,tidal --no-breakdown > $O/l2_${v}_$n.txt 2>&1
  el "l2 $v rc=$?"; row $O/l2_${v}_$n.txt "l2 $v" | tee -a $O/rows_$v.txt
done
sum() { awk '{for(i=1;i<=NF;i++) if ($i ~ /^ms=/) s += substr($i, 4)} END {printf "%.3f", s}' $O/rows_$1.txt; }
sm=$(sum m) sp=$(sum p); suite_env=""
awk -v a=$sp -v b=$sm 'BEGIN {exit !(a < b)}' || suite_env="TIDAL_SIMT_CLUSTER=0"
el "sum of l2 rows: m $sm p $sp -> suite on p ${suite_env:-default}"
grep -q H200 $O/gpu.txt && env $suite_env bash benchmarks/suite/run_h200.sh $P $O/suite9 --suite benchmarks/suite/issue9.json --budget-seconds 200 > $O/suite9.log 2>&1
el "suite rc=$?"; tail -3 $O/suite9.log
left=$((540 - ($(date +%s) - device_call_t0)))
el "gpu_suite p with ${left} s"
TIDAL_PYTHON=/bin/false timeout $left bash launch/gpu_suite.sh $P $O/tests tests > /dev/null 2>&1
el "gpu_suite p rc=$?"; tail -1 $O/tests/summary.txt; grep rc= $O/tests/summary.txt | grep -v "failed=0 " | head
for v in m p m p; do F=$M; [[ $v == m ]] || F=$P
  (( $(date +%s) - device_call_t0 > 550 )) && break
  timeout 40 $F/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head,per-kv-head --no-breakdown > $O/l3_${v}_$SECONDS.txt 2>&1
  el "l3 $v rc=$?"; row $(ls -t $O/l3_${v}_*.txt | head -1) "l3 $v"
done
