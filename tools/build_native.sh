#!/usr/bin/env bash
# Build asrgguf's native ggml backend (native/, CMakeLists.txt) into asrgguf/_native/libasrgguf_native.so, and the
# decode loop in C (native/decode_loop.c) into asrgguf/_native/libasrgguf_loop.so.
# ggml's headers come from the pinned llama-cpp-python sdist through tools/llama_cpp_src.py: $ASRGGUF_LLAMA_CPP_SRC
# (its vendor/llama.cpp), else .cache/llama-cpp-python-src/vendor/llama.cpp, downloaded there once with pip.
# Usage: tools/build_native.sh   (PYTHON=python3, BUILD_DIR=build/native)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD=${BUILD_DIR:-build/native}
SRC=$($PY tools/llama_cpp_src.py)   # ASRGGUF_LLAMA_CPP_SRC, else .cache/llama-cpp-python-src (fetched once)
cmake -S . -B "$BUILD" -DLLAMA_CPP_SRC="$SRC" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j 2 >/dev/null
mkdir -p asrgguf/_native
# a new file renamed into place: a process that has the old library loaded keeps its mapping (cp over a loaded
# library changes its pages under it and crashed a running test process)
for lib in libasrgguf_native.so libasrgguf_loop.so; do
  cp "$BUILD/$lib" "asrgguf/_native/.$lib.new"
  mv -f "asrgguf/_native/.$lib.new" "asrgguf/_native/$lib"
done
echo "built asrgguf/_native/libasrgguf_native.so and libasrgguf_loop.so (headers: $SRC)"
