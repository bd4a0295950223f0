#!/bin/bash
# Run HERE (the CPU machine, repo root): fill .dev/gpu (git-ignored) with what tools/cuda/check.sh needs
# on a lent GPU machine, which has no network: a slimmed llama-cpp-python sdist, the wheels its image
# lacks (the official qwen-asr among them, with the transformers it pins), a 0.6B skeleton checkpoint
# (config + tokenizer; the weights are drawn there), 60 s of speech, and the demo model's references made
# here (official qwen-asr float32 ids, asrgguf's CPU ids and word times). Then, through the device tool:
#   run(command="bash tools/cuda/check.sh", carry=[".dev/gpu"], timeout_s=570)
set -euo pipefail
cd "$(dirname "$0")/../.."
G=.dev/gpu
rm -rf "$G/whl"; mkdir -p "$G/whl"
EX=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$EX")"
grep -qx '/.dev/' "$EX" 2>/dev/null || echo '/.dev/' >> "$EX"
VER=$(python -c "import importlib.metadata as m; print(m.version('llama_cpp_python'))")
SDIST=${SDIST:-.cache/dl/llama_cpp_python-$VER.tar.gz}
[ -f "$SDIST" ] || python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$(dirname "$SDIST")"
# the working tree and the carried folder travel together under 64 MiB: drop what a CUDA build never reads
T=$(mktemp -d); tar xzf "$SDIST" -C "$T"; S=$(ls -d "$T"/llama_cpp_python-*); V=$S/vendor/llama.cpp
rm -rf "$S/.git" "$S/docs" "$S/examples" "$S/tests" "$V/.git" "$V/models" "$V/.github" "$V/docs" "$V/media" \
  "$V/benches" "$V/tests" "$V/examples" "$V/tools/server" "$V/tools/ui" "$V/gguf-py" "$V/conversion"
for b in vulkan opencl hexagon et sycl metal; do rm -rf "$V/ggml/src/ggml-$b"; done
tar czf "$G/lcp.tar.gz" -C "$T" "$(basename "$S")"; rm -rf "$T"
# the device image has torch, numpy, transformers 5, click; not these (qwen-asr pins transformers 4.57, which
# wants tokenizers < 0.23 and huggingface_hub < 1; its module-level `import nagisa` gets a stand-in there)
for w in gguf soundfile soxr cffi pycparser diskcache librosa audioread pooch decorator qwen-asr qwen-omni-utils \
         transformers tokenizers huggingface_hub platformdirs; do
  v=$(python -c "import importlib.metadata as m; print(m.version('$w'))")
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$G/whl" "$w==$v"
done
python tests/support/random_checkpoint.py "$G/skel06" --size 0.6b --skeleton
rm -f "$G/skel06/tokenizer.json"   # 11 MB the quantizer does not read when vocab.json and merges.txt are there
[ -f "$G/speech60.wav" ] || {
  espeak-ng -s 150 -w "$G/long.wav" "$(python -c "import sys; sys.path.insert(0, 'tests'); from support.speech_text import SENTENCES; print(' '.join(SENTENCES * 3))")"
  sox "$G/long.wav" -r 16000 "$G/speech60.wav" trim 0 60; rm "$G/long.wav"; }
python tools/cuda/demo_ref.py "$G"
mkdir -p "$G/stub/nagisa"
echo '"""Stand-in: qwen_asr imports nagisa (Japanese words for its aligner, unused by the check)."""' > "$G/stub/nagisa/__init__.py"
du -sh "$G"
