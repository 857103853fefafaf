#!/bin/bash
# Call 47 (written 2026-12-04, eighth session, no device lent): e16 = main's GPU code (build main),
# e21 = main + pending/0001-0006 (`git am pending/*.patch` on a branch; branch next-logits16 when
# written), each built and packed (launch/device_pack.sh) as .carry/e16.tar.xz and .carry/e21.tar.xz.
# e21's A/B switches (model/llama.cc) separate its parts in one binary:
#   TIDAL_LOGITS16=0        f32 logits for every selecting token (0005 off)
#   TIDAL_FP8_QKV_APPEND=0  FP8 appends in a launch of their own (0004 off)
#   both                    ~ e19 (the top-k patches 0001-0003 alone)
# Order: the changed kernels' GPU tests first (stop if they fail), kernel_bench rows, the real
# 2^20 step's kernels under ncu, steps A/B, every GPU test. ~8 min; split at "steps" if need be.
source launch/device_call.sh o47 e21:b e16:a
A=/tmp/a/build; B=/tmp/b/build
# The FP8 tensor-core kernel changed (its logit stores): its head_dim-64 case under memcheck
# first (PERF_NOTES: an illegal instruction there once followed an edit).
timeout 120 compute-sanitizer --tool memcheck $B/tests/kernels/kernels_cuda_test --gtest_filter='*fp8_gqa4x1_d64_large_bf16*' > $O/sanitizer.txt 2>&1
el "memcheck rc=$?"; grep -E "ERROR SUMMARY|PASSED|FAILED" $O/sanitizer.txt | tail -3
timeout 240 $B/tests/kernels/kernels_cuda_test --gtest_filter='*Topk*:*Quest*:*Qkv*:*DecodeAttention*:*HeadGroup*:*PdlChain*' > $O/tests_changed.txt 2>&1
rc=$?; el "changed-kernel tests rc=$rc"; grep -E "PASSED|FAILED" $O/tests_changed.txt | tail -8
[ $rc -eq 0 ] || { echo "stop: a changed kernel fails"; exit 1; }
timeout 150 $B/benchmarks/kernel_bench --op topk_per_row --op head_group_probs --graph-calls 32 --budget-ms 8 > $O/kb_sel.txt 2>&1
timeout 150 $B/benchmarks/kernel_bench --op decode_attention --shape fp8 --graph-calls 32 --budget-ms 8 > $O/kb_attn.txt 2>&1
grep -hE "topk_per_row|head_group_probs|decode_attention" $O/kb_sel.txt $O/kb_attn.txt | grep -E "1048576|100000|logits" | awk '{s=""; for(i=2;i<=NF-7;i++) s=s" "$i; printf "%-84s %s us wrong=%s\n", s, $(NF-5), $NF}'
el kernel_bench
# The real 2^20 FP8 per-KV-head step, one eager step, each kernel alone (ncu): e21 as is, then
# with both switches off.
for sw in on off; do
  envs=""; [ $sw = off ] && envs="TIDAL_LOGITS16=0 TIDAL_FP8_QKV_APPEND=0"
  env $envs timeout 200 ncu --clock-control none --csv --metrics gpu__time_duration.sum -k 'regex:^(?!fill_random|block_table_update|paged_kv_append)' -c 800 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --eager --no-breakdown --steps 1 --warmup 0 > $O/ncu_step_$sw.csv 2> $O/ncu_step_$sw.err
  echo "-- switches $sw (rc=$?): kernel, count, total us, mean us"
  SW=$sw python3 - <<'PY'
import csv, collections, os
sw = os.environ['SW']
rows = [r for r in csv.reader(open(f'/tmp/o47/ncu_step_{sw}.csv')) if len(r) > 10]
hdr, rows = rows[0], rows[1:]
ki, vi, ui = hdr.index('Kernel Name'), hdr.index('Metric Value'), hdr.index('Metric Unit')
agg = collections.defaultdict(lambda: [0, 0.0])
for r in rows:
    v, u = float(r[vi].replace(',', '')), r[ui]
    us = v / 1000 if u in ('nsecond', 'ns') else v if u in ('usecond', 'us') else v * 1000
    k = r[ki].split('(')[0].split('<')[0].replace('void ', '').strip()
    agg[k][0] += 1
    agg[k][1] += us
for k, (c, s) in sorted(agg.items(), key=lambda x: -x[1][1])[:16]:
    print(f"{k:60s} {c:5d} {s:9.1f} {s / c:8.2f}")
PY
done
el ncu
# Steps (ms): e16, e21, e21 with each switch off, interleaved, twice.
for r in 1 2; do
  for v in a b b16 bqkv; do
    case $v in a) V=$A; E="";; b) V=$B; E="";; b16) V=$B; E="TIDAL_LOGITS16=0";; bqkv) V=$B; E="TIDAL_FP8_QKV_APPEND=0";; esac
    env $E timeout 100 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 100K,1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --no-breakdown --steps 20 --warmup 3 > $O/fp8_$v$r.txt 2>&1
    row $O/fp8_$v$r.txt "fp8 $v$r"
  done
done
for v in a b b16; do
  case $v in a) V=$A; E="";; b) V=$B; E="";; b16) V=$B; E="TIDAL_LOGITS16=0";; esac
  env $E timeout 120 $V/launch/tidal bench --preset llama3-8b --budget 2048 --context 10K,100K --policy tidal,full --granularity per-kv-head,per-query-head --no-breakdown > $O/bf16_$v.txt 2>&1
  row $O/bf16_$v.txt "bf16 $v"
done
el steps
