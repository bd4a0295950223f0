PYTHON ?= python3
# torch is installed first and only when missing: on this project's CPU machines the local CPU build
# (any other torch there pulls gigabytes of CUDA); elsewhere e.g. `make demo TORCH=torch`
TORCH ?= torch==2.13.0

.PHONY: demo

# install asrgguf (llama-cpp-python builds llama.cpp once, a few minutes), then transcribe the packaged
# sample with the built-in demo model and print its word times (asrgguf/data/demo; docs/demo.md)
demo:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH)"
	$(PYTHON) -m pip install -q -e .
	$(PYTHON) -m asrgguf.cli run --model demo asrgguf/data/demo/sample.wav
	@echo "(spoken: $$(cat asrgguf/data/demo/sample.txt))"
	@echo "word times (the demo aligner, --timestamps word):"
	$(PYTHON) -m asrgguf.cli run --model demo --timestamps word --format json --quiet asrgguf/data/demo/sample.wav \
	  | $(PYTHON) -c "import json, sys; [print(f'{w[\"start\"]:6.2f} {w[\"end\"]:6.2f}  {w[\"text\"]}') for s in json.load(sys.stdin)['segments'] for w in s['words']]"
