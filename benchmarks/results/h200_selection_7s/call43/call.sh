#!/bin/bash
# Call 43: every kernel of eager llama3-8b FP8 tidal steps at 2^20 (real plan and data), durations
# from ncu (each kernel alone: no overlap), to place the selection layers' extra 0.3 ms.
set -u
O=/tmp/o43; mkdir -p $O
trap 'tar -C /tmp/o43 -cJf $OUT/o43.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/b && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
[ -d /tmp/b/build ] || tar -xJf .carry/e16.tar.xz -C /tmp/b || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/b/lib:${LD_LIBRARY_PATH:-}
B=/tmp/b/build
timeout 400 ncu --clock-control none --csv --metrics gpu__time_duration.sum -k 'regex:^(?!fill_random|block_table_update|paged_kv_append)' -c 800 $B/launch/tidal bench --preset llama3-8b --budget 2048 --context 1048576 --kv-dtype fp8 --policy tidal --granularity per-kv-head --eager --no-breakdown --steps 2 --warmup 1 > $O/ncu_step.csv 2> $O/ncu_step.err
echo "rc=$?"; wc -l $O/ncu_step.csv; tail -3 $O/ncu_step.err
python3 - <<'PY'
import csv, collections
rows=[r for r in csv.reader(open('/tmp/o43/ncu_step.csv')) if len(r)>10]
hdr=rows[0]; rows=rows[1:]
ki=hdr.index('Kernel Name'); vi=hdr.index('Metric Value'); ui=hdr.index('Metric Unit')
seq=[]
for r in rows:
    v=float(r[vi].replace(',','')); u=r[ui]
    us = v/1000 if u in ('nsecond','ns') else v if u in ('usecond','us') else v*1000 if u in ('msecond','ms') else v
    seq.append((r[ki].split('(')[0].split('<')[0].replace('void ','').strip(), us))
print(len(seq), 'kernels', set(r[ui] for r in rows))
# last step: find the last lm-head-ish kernel boundaries by printing the tail ~ 400 entries compactly
with open('/tmp/o43/seq.txt','w') as f:
    for i,(k,us) in enumerate(seq): f.write(f"{i} {k} {us:.2f}\n")
agg=collections.defaultdict(lambda:[0,0.0])
n=len(seq); half=seq[n//2:]
for k,us in seq: agg[k][0]+=1; agg[k][1]+=us
for k,(c,s) in sorted(agg.items(), key=lambda x:-x[1][1])[:30]: print(f"{k:60s} n={c:5d} total={s:9.1f} us avg={s/c:8.2f}")
PY
