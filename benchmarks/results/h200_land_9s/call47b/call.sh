#!/bin/bash
source launch/device_call.sh o47b e21:b
B=/tmp/b/build
timeout 280 bash launch/gpu_suite.sh $B $O/tests tests > $O/suite_stdout.txt 2>&1
el "suite rc=$?"; grep -v "failed=0" $O/tests/summary.txt | tail -6; tail -1 $O/tests/summary.txt
# Issue 14's tables on e21 (call 31's commands).
timeout 150 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 256K,512K,1048576 --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_long.txt 2>&1
el "fp8 long rc=$?"; row $O/fp8_long.txt fp8
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --kv-dtype fp8 --policy full,tidal --granularity per-kv-head --no-breakdown > $O/fp8_short.txt 2>&1
el "fp8 short rc=$?"; row $O/fp8_short.txt fp8
timeout 100 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 32K,100K --policy full,tidal --granularity per-kv-head --no-breakdown > $O/bf16_short.txt 2>&1
el "bf16 rc=$?"; row $O/bf16_short.txt bf16
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/gpu.txt
