#!/bin/bash
# Run THERE, on a lent GPU machine, from the repo root, with .dev/gpu carried (tools/cuda/prepare.sh made it):
#   run(command="bash tools/cuda/check.sh", carry=[".dev/gpu"], timeout_s=540)
# Builds llama-cpp-python with CUDA (flash-attention kernels left out so the build takes ~4 min on 16 cores)
# and README's flags (LCP_EXTRA_CMAKE: more CMake arguments, default -DCMAKE_CXX_FLAGS=-fno-gnu-unique;
# LCP_LDFLAGS: linker flags, default a static C++ runtime; LCP_LDFLAGS= LCP_EXTRA_CMAKE= builds the
# default that crashed beside torch on an H200, docs/benchmarks.md "CUDA"), probes which import orders of
# llama.cpp / numpy / torch survive a model load, checks the demo model's ids against the official ones,
# and times the 0.6B pair with tools/compare.py. A rerun on a warm machine starts from scratch.
# Everything lands in $OUT: results.txt as it goes, logs.tar.gz, compare*.md (the tool returns at most 8 files).
set -u
START=$(date +%s); el(){ echo $(( $(date +%s) - START )); }
G=.dev/gpu; O=/tmp/o; R=$OUT/results.txt
rm -rf /tmp/lcp /tmp/b /tmp/o /tmp/site /tmp/cmp /tmp/demof32; mkdir -p $O
pack(){ tar czf $OUT/logs.tar.gz -C $O . 2>/dev/null; }
log(){ echo "== [$(el)s] $*" | tee -a $R; pack; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a $R
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $G/whl/*.whl > $O/pip.log 2>&1
export PYTHONPATH=/tmp/lcp:/tmp/site:$PWD PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
python3 -c "import torch, numpy; print('torch', torch.__version__, torch.cuda.get_device_name(), 'numpy', numpy.__version__)" 2>&1 | tail -1 | tee -a $R
python3 tools/cuda/fill_random.py $G/skel06 /tmp/r06 > $O/gen.log 2>&1 &
GEN=$!
mkdir -p /tmp/b && tar xzf $G/lcp.tar.gz -C /tmp/b
ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF ${LCP_EXTRA_CMAKE--DCMAKE_CXX_FLAGS=-fno-gnu-unique}"
LCP_LDFLAGS=${LCP_LDFLAGS-"-static-libstdc++ -static-libgcc -Wl,--exclude-libs,ALL"}
log "build llama-cpp-python, CMAKE_ARGS=$ARGS LDFLAGS=${LCP_LDFLAGS:-}"
(cd /tmp/b/llama_cpp_python-* && CMAKE_ARGS="$ARGS" LDFLAGS="${LCP_LDFLAGS:-}" CMAKE_BUILD_PARALLEL_LEVEL=16 timeout 330 \
  python3 -m pip install --no-deps --no-build-isolation --no-index --target /tmp/lcp . > $O/build.log 2>&1)
log "build rc=$? (tail: $(tail -1 $O/build.log))"
python3 -c "import llama_cpp.llama_cpp as L; print('gpu offload', L.llama_supports_gpu_offload())" 2>&1 | tail -1 | tee -a $R
for lib in libllama libggml-base libggml-cuda; do ldd /tmp/lcp/llama_cpp/lib/$lib.so | grep -E "stdc|gomp|gcc_s|cudart|cublas" | sed "s/^/  $lib: /" | tee -a $R; done
D=asrgguf/data/demo/qwen3-asr-demo-q8_0.gguf
for s in llama numpy,llama torch,llama llama,torch llama,torchcuda torchcuda,llama; do
  timeout 40 python3 tools/cuda/probe.py $D $s > $O/probe_$s.log 2>&1; log "probe $s: rc=$? $(grep -c '  OK' $O/probe_$s.log) steps OK"
  grep "mapped\|free()\|Fatal" $O/probe_$s.log | head -3 | tee -a $R
done
python3 -m asrgguf.cli quantize asrgguf/data/demo/qwen3-asr-demo --outtype f32 -o /tmp/demof32 --quiet > /dev/null 2>&1
F=/tmp/demof32/qwen3-asr-demo-f32.gguf
i=0
for v in "$F cuda float32 auto official_f32" "$F cuda auto auto cpu_f32" "$D cuda auto auto cpu_q8_0" "$D cpu float32 0 cpu_q8_0"; do
  i=$((i + 1)); log "demo: $v"
  ASRGGUF_LLAMA_LOG=1 timeout 90 python3 tools/cuda/demo_check.py $G $v 2> $O/demo_$i.err | tee -a $R
  [ ${PIPESTATUS[0]} != 0 ] && grep -v "llama_model_loader: - \|print_info\|control token" $O/demo_$i.err | tail -6 | tee -a $R
done
log "asrgguf run --model demo"
timeout 60 python3 -m asrgguf.cli run --model demo $G/sample.wav 2>&1 | tail -2 | tee -a $R
MFA=off
for fa in off auto; do
  timeout 60 python3 tools/mtmd_run.py $G/sample.wav --model $D --mmproj asrgguf/data/demo/mmproj-qwen3-asr-demo-f16.gguf \
    --flash-attn $fa --max-new-tokens 64 --verbose > $O/mtmd_$fa.json 2> $O/mtmd_$fa.err; rc=$?
  log "mtmd_run demo pair, flash-attn $fa: rc=$rc $(python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(repr(d['text']), d['timings'])" $O/mtmd_$fa.json 2>&1 | tail -1)"
  [ $rc != 0 ] && grep -v "llama_model_loader: - \|print_info\|control token" $O/mtmd_$fa.err | tail -4 | tee -a $R
  [ $fa = auto ] && [ $rc = 0 ] && MFA=auto
done
python3 -c "import numpy as np, soundfile as sf; x, sr = sf.read('$G/speech60.wav', dtype='int16'); sf.write('/tmp/speech300.wav', np.tile(x, 5), sr)"
wait $GEN; log "0.6B random checkpoint: $(tail -1 $O/gen.log)"
( while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done > $O/gpumem.log 2>/dev/null ) &
MON=$!
for a in 60 300; do
  [ $(el) -gt 410 ] && { log "skipped $a s: out of time"; break; }
  A=$G/speech60.wav; runs="--runs 2 --warmup"; [ $a = 300 ] && { A=/tmp/speech300.wav; runs="--runs 1"; }
  log "compare.py 0.6B, $a s audio, 200 tokens, 8 threads, mtmd flash-attn $MFA"
  timeout $(( 500 - $(el) )) python3 tools/compare.py --audio $A --model /tmp/r06 --tokens 200 --threads 8 $runs \
    --contenders asrgguf-q8_0,asrgguf-f16,mtmd-q8_0 --workdir /tmp/cmp --mtmd-flash-attn $MFA \
    --markdown $OUT/compare$a.md --json $O/compare$a.json > $O/compare$a.log 2>&1
  log "compare rc=$?"; cat $OUT/compare$a.md >> $R 2>/dev/null
done
kill $MON 2>/dev/null; log "peak GPU memory used (MiB, whole card): $(sort -n $O/gpumem.log | tail -1)"
log done
