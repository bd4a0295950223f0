"""Import-order probe: a GPU build of llama.cpp in one process with numpy / torch (docs/benchmarks.md, CUDA).
    python tools/cuda/probe.py DECODER STEPS     STEPS: comma list of numpy, torch, torchcuda, llama (loads
DECODER with all layers on the GPU), in order. Prints the C++ runtime, OpenMP and allocator libraries mapped
before the load, then OK per step, or the process dies."""
import sys

dec, steps = sys.argv[1], sys.argv[2].split(",")


def mapped() -> list[str]:
    keys = ("libstdc++", "libgomp", "libgcc_s", "malloc", "libiomp", "libomp")
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if any(k in line for k in keys)})


for step in steps:
    if step == "numpy":
        import numpy  # noqa: F401
    elif step == "torch":
        import torch  # noqa: F401
    elif step == "torchcuda":
        import torch

        torch.ones(1, device="cuda")
    elif step == "llama":
        import llama_cpp.llama_cpp as L

        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 99
        print("  mapped before the load:", mapped(), flush=True)
        assert L.llama_model_load_from_file(dec.encode(), mp)
    else:
        raise SystemExit(f"unknown step {step}")
    print(f"  OK {step}", flush=True)
