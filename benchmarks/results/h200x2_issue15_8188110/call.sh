#!/bin/bash
# Call 20 (2026-12-04, 4th session, nvidia-h200-x2): issue 15, first run of the NCCL path on two
# GPUs: topology, equality under tp 2 / pp 2, then the bench cells (main 8188110, e2's build).
set -u
O=/tmp/o20; mkdir -p $O
trap 'tar -C /tmp/o20 -cJf $OUT/o20.tar.xz .' EXIT
R=$PWD
mkdir -p /work /tmp/x && ln -sfn "$R" /work/bld && ln -sfn "$R" /work/main && ln -sfn "$R/.carry/shared" /work/shared
tar -xJf .carry/e2.tar.xz -C /tmp/x || { echo "extract failed"; exit 1; }
export LD_LIBRARY_PATH=/tmp/x/lib:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader | tee $O/gpu.txt
nvidia-smi topo -m > $O/topo.txt 2>&1; cat $O/topo.txt
mpirun --version 2>&1 | head -1 | tee -a $O/gpu.txt
t0=$(date +%s)
# Sanity: tp 2 on the embedded model, NCCL's own log on.
NCCL_DEBUG=INFO timeout 60 mpirun -np 2 --oversubscribe --bind-to none -x NCCL_DEBUG -x NCCL_NVLS_ENABLE /tmp/x/build/launch/tidal generate --prompt "Once upon a time" --temperature 0 --print-ids --ignore-eos --max-new-tokens 16 --tp 2 > $O/sanity.txt 2>&1
echo "sanity rc=$? $(( $(date +%s) - t0 )) s"; grep -v NCCL $O/sanity.txt | tail -3; grep -E "NCCL INFO (Channel|comm|Connected|P2P|NVLS|Using)" $O/sanity.txt | head -12
timeout 250 bash benchmarks/parallel/run_multi_gpu.sh /tmp/x/build $O/mg --np 2 --only equality > $O/equality_stdout.txt 2>&1
echo "equality rc=$? $(( $(date +%s) - t0 )) s"; cat $O/mg/equality.txt | cut -c1-200
timeout 230 bash benchmarks/parallel/run_multi_gpu.sh /tmp/x/build $O/mg --np 2 --only bench > $O/bench_stdout.txt 2>&1
echo "bench rc=$? $(( $(date +%s) - t0 )) s"; tail -60 $O/bench_stdout.txt
