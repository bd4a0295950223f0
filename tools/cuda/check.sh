#!/bin/bash
# Run THERE, on a lent GPU machine, from the repo root, with .dev/gpu carried (tools/cuda/prepare.sh made it):
#   run(command="bash tools/cuda/check.sh", carry=[".dev/gpu"], timeout_s=570)
# Builds llama-cpp-python with CUDA (flash-attention kernels left out so the build fits the lease) and
# README's flags (a static C++ runtime and -fno-gnu-unique; why: docs/benchmarks.md, "The build that runs"),
# builds asrgguf's native backend against it, then checks the engine on
# the demo model against references made on the CPU (ids, the native backend beside the CUDA backend, word
# times of the demo aligner) and times the 0.6B pair against llama.cpp's pipeline and the official
# package on the GPU with bench/compare.py. A rerun on a warm machine starts from scratch.
# Everything lands in $OUT: results.txt as it goes, logs.tar.gz, compare60.md.
# ONLY_COMPARE=1 skips the demo checks (a rerun for the timing); CMP_END=S ends compare.py S seconds in.
set -u
START=$(date +%s); el(){ echo $(( $(date +%s) - START )); }
G=.dev/gpu; O=/tmp/o; R=$OUT/results.txt
rm -rf /tmp/lcp /tmp/b /tmp/o /tmp/site /tmp/cmp /tmp/demof32; mkdir -p $O
pack(){ tar czf $OUT/logs.tar.gz -C $O . 2>/dev/null; }
log(){ echo "== [$(el)s] $*" | tee -a $R; pack; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a $R
lscpu | grep -E "Model name|^CPU\(s\)" | tr -s ' ' | tee -a $R
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $G/whl/*.whl > $O/pip.log 2>&1
export PYTHONPATH=/tmp/lcp:/tmp/site:$PWD/$G/stub:$PWD PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
python3 -c "import torch, numpy, transformers; print('torch', torch.__version__, torch.cuda.get_device_name(), 'numpy', numpy.__version__, 'transformers', transformers.__version__)" 2>&1 | tail -1 | tee -a $R
python3 tools/cuda/fill_random.py $G/skel06 /tmp/r06 > $O/gen.log 2>&1 &
GEN=$!
mkdir -p /tmp/b && tar xzf $G/lcp.tar.gz -C /tmp/b
SRC=$(ls -d /tmp/b/llama_cpp_python-*)
ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF -DCMAKE_CXX_FLAGS=-fno-gnu-unique"
LDF="-static-libstdc++ -static-libgcc -Wl,--exclude-libs,ALL"
log "build llama-cpp-python, CMAKE_ARGS=$ARGS LDFLAGS=$LDF"
(cd $SRC && CMAKE_ARGS="$ARGS" LDFLAGS="$LDF" CMAKE_BUILD_PARALLEL_LEVEL=16 timeout 330 \
  python3 -m pip install --no-deps --no-build-isolation --no-index --target /tmp/lcp . > $O/build.log 2>&1)
log "build rc=$? (tail: $(tail -1 $O/build.log))"
python3 -c "import llama_cpp.llama_cpp as L; print('gpu offload', L.llama_supports_gpu_offload())" 2>&1 | tail -1 | tee -a $R
ASRGGUF_LLAMA_CPP_SRC=$SRC/vendor/llama.cpp BUILD_DIR=/tmp/nb bash tools/build_native.sh > $O/native.log 2>&1
log "native backend build rc=$? ($(tail -1 $O/native.log))"
D=asrgguf/data/demo/qwen3-asr-demo-q8_0.gguf
if [ -z "${ONLY_COMPARE:-}" ]; then
python3 -m asrgguf.cli quantize asrgguf/data/demo/qwen3-asr-demo --outtype f32 -o /tmp/demof32 --quiet > /dev/null 2>&1
F=/tmp/demof32/qwen3-asr-demo-f32.gguf
i=0
# DECODER DEVICE DTYPE N_GPU_LAYERS REF [words] [no-native]
for v in "$F cuda float32 auto official_f32" "$F cuda auto auto cpu_f32" "$D cuda auto auto cpu_q8_0_llamacpp words" \
         "$D cpu float32 0 cpu_q8_0 words" "$D cpu float32 0 cpu_q8_0_llamacpp - no-native" "$D cuda float32 0 cpu_q8_0"; do
  i=$((i + 1)); set -- $v; log "demo: $v"
  nn=""; [ "${7:-}" = no-native ] && nn=1
  ASRGGUF_NO_NATIVE=$nn ASRGGUF_LLAMA_LOG=1 timeout 90 python3 tools/cuda/demo_check.py $G $1 $2 $3 $4 $5 ${6:-} \
    2> $O/demo_$i.err | tee -a $R
  [ ${PIPESTATUS[0]} != 0 ] && grep -v "llama_model_loader: - \|print_info\|control token" $O/demo_$i.err | tail -6 | tee -a $R
done
log "asrgguf run --model demo --timestamps word --aligner demo (CLI, defaults: encoder cuda float16, all layers on the GPU)"
timeout 60 python3 -m asrgguf.cli run --model demo --timestamps word --aligner demo --format json $G/sample.wav \
  > $O/cli_words.json 2> $O/cli_words.err
python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(repr(d['text']), d['model'].get('decoder_device'), d['model'].get('native'), [(w['text'], w['start'], w['end']) for s in d['segments'] for w in s.get('words', [])][:5])" $O/cli_words.json 2>&1 | tail -1 | tee -a $R
fi
wait $GEN; log "0.6B random checkpoint: $(tail -1 $O/gen.log)"
( while sleep 0.5; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done > $O/gpumem.log 2>/dev/null ) &
MON=$!
log "compare.py 0.6B, 60 s audio, 200 tokens, 8 threads"
timeout $(( ${CMP_END:-540} - $(el) )) python3 bench/compare.py --audio $G/speech60.wav --model /tmp/r06 --tokens 200 --threads 8 \
  --runs 1 --warmup --contenders asrgguf-q8_0,mtmd-q8_0,official-cuda --workdir /tmp/cmp --mtmd-flash-attn off \
  --markdown $OUT/compare60.md --json $O/compare60.json > $O/compare60.log 2>&1
log "compare rc=$?"; cat $OUT/compare60.md >> $R 2>/dev/null; tail -3 $O/compare60.log | tee -a $R
kill $MON 2>/dev/null; log "peak GPU memory used (MiB, whole card): $(sort -n $O/gpumem.log | tail -1)"
log done
