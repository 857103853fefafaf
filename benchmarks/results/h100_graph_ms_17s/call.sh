#!/bin/bash
# Call 76 (2026-12-06, seventeenth session): gr = graph-ms eaa7e9c = main 71a1cc7 + Engine::replay_last_step
# and tidal bench's graph_ms column (the last step's graph replayed back to back: the step's device
# time without the host's planning and launch). How much of a step the host adds; the engine
# tests (replaying advances nothing).
source launch/device_call.sh o76 gr:s
S=/tmp/s/build
nvidia-smi --query-gpu=name --format=csv,noheader | tee $O/gpu.txt
for p in llama3-8b llama2-7b; do
  timeout 60 $S/launch/tidal bench --preset $p --budget 2048 --context 10K,100K --policy full,tidal --granularity per-query-head --no-breakdown --graph-replays 50 > $O/${p}.txt 2>&1
  el "$p rc=$?"; grep -E "^ +NVIDIA" $O/${p}.txt | cut -c1-175
done
timeout 150 $S/tests/engine/engine_cuda_test > $O/engine_tests.txt 2>&1
el "engine tests rc=$?"; grep -E "^\[  (PASSED|FAILED) " $O/engine_tests.txt | head
