"""One q8_0 product at a real shape: ggml's CPU backend (llama.cpp's own kernels) vs asrgguf's native
backend, through ggml's graph API, same weights and activations, alternating, many short repetitions
(min and median: short runs are the least disturbed on a shared machine).

    python bench/native_kernels.py [--threads 1] [--reps 20] [--shapes MxKxN,...] [--lib-b OTHER.so]
Shapes: the 0.6B output matrix at decode (151936 x 1024, 1 column: 165 MB of weights, far beyond L3:
a bandwidth test) and an FFN product at prefill (3072 x 1024 and 1024 x 3072, 256 columns: compute).
`--shapes` gives others (rows x K x columns); `--lib-b` adds a second build of the native library as a
third contender in the same alternation (e.g. the previous commit's, to measure a kernel change).

Figures: docs/native.md (single products).
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from pathlib import Path

import numpy as np

from asrgguf import native


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


def libs():
    import llama_cpp.llama_cpp as L

    d = Path(L.__file__).resolve().parent / "lib"
    base, cpu = ctypes.CDLL(str(d / "libggml-base.so.0")), ctypes.CDLL(str(d / "libggml-cpu.so.0"))
    P = ctypes.c_void_p
    for lib, name, res, args in [
        (base, "ggml_init", P, [_InitParams]), (base, "ggml_new_tensor_2d", P, [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
        (base, "ggml_mul_mat", P, [P, P, P]), (base, "ggml_new_graph", P, [P]), (base, "ggml_build_forward_expand", None, [P, P]),
        (base, "ggml_backend_alloc_ctx_tensors_from_buft", P, [P, P]), (base, "ggml_backend_buffer_set_usage", None, [P, ctypes.c_int]),
        (base, "ggml_backend_tensor_set", None, [P, P, ctypes.c_size_t, ctypes.c_size_t]),
        (base, "ggml_backend_graph_compute", ctypes.c_int, [P, P]), (base, "ggml_backend_reg_dev_get", P, [P, ctypes.c_size_t]),
        (base, "ggml_backend_dev_init", P, [P, ctypes.c_char_p]), (base, "ggml_backend_dev_buffer_type", P, [P]),
        (cpu, "ggml_backend_cpu_init", P, []), (cpu, "ggml_backend_cpu_set_n_threads", None, [P, ctypes.c_int]),
        (cpu, "ggml_backend_cpu_buffer_type", P, [])]:
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return base, cpu


def make(base, buft_w, buft_x, wq: bytes, K: int, M: int, x: np.ndarray):
    cw = base.ggml_init(_InitParams(1 << 20, None, True))
    cx = base.ggml_init(_InitParams(1 << 20, None, True))
    w = base.ggml_new_tensor_2d(cw, 8, K, M)
    b = base.ggml_new_tensor_2d(cx, 0, K, x.shape[0])
    gf = base.ggml_new_graph(cx)
    base.ggml_build_forward_expand(gf, base.ggml_mul_mat(cx, w, b))
    bw = base.ggml_backend_alloc_ctx_tensors_from_buft(cw, buft_w)
    base.ggml_backend_alloc_ctx_tensors_from_buft(cx, buft_x)
    base.ggml_backend_buffer_set_usage(bw, 1)
    base.ggml_backend_tensor_set(w, wq, 0, len(wq))
    base.ggml_backend_tensor_set(b, x.ctypes.data, 0, x.nbytes)
    return gf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--shapes", default="151936x1024x1,3072x1024x256,1024x3072x256",
                    help="comma-separated rows x K x columns")
    ap.add_argument("--lib-b", help="a second native library build, measured alongside")
    ap.add_argument("--cold", type=int, default=0, metavar="MB",
                    help="copies of each weight filling MB megabytes, used in turn, so that each product reads its "
                         "weights from memory and not from the L3 cache (as in a decode step)")
    a = ap.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    base, cpu = libs()
    base.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    base.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    def backend(path):
        lib = ctypes.CDLL(str(path))
        lib.ggml_backend_init.restype = ctypes.c_void_p
        dev = base.ggml_backend_reg_dev_get(lib.ggml_backend_init(), 0)
        be = base.ggml_backend_dev_init(dev, None)
        # the thread count of the native backend: its proc address, as llama.cpp sets it
        setn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)
        setn(base.ggml_backend_reg_get_proc_address(lib.ggml_backend_init(), b"ggml_backend_set_n_threads"))(be, a.threads)
        return dev, be

    dev, nat = backend(native.find_library())
    dev_b, nat_b = backend(a.lib_b) if a.lib_b else (None, None)
    ref = cpu.ggml_backend_cpu_init()
    cpu.ggml_backend_cpu_set_n_threads(ref, a.threads)
    cbuft = cpu.ggml_backend_cpu_buffer_type()
    rng = np.random.default_rng(0)
    bcols = " library B min / median (ms) | B: speed-up (median) | B |" if a.lib_b else ""
    print(f"| shape (rows x K, columns) | ggml CPU min / median (ms) | native min / median (ms) | speed-up (median) | "
          f"native |{bcols}\n|---|---:|---:|---:|---:|" + ("---:|---:|---:|" if a.lib_b else ""))

    def rate(wq, M, K, N, ms):
        return f"{len(wq) / ms / 1e6:.1f} GB/s best" if N <= 8 else f"{M * K * N / ms / 1e6:.0f} GMAC/s best"

    for M, K, N in shapes:
        wq = quantize((rng.standard_normal((M, K)) * 0.05).astype(np.float32), GGMLQuantizationType.Q8_0).tobytes()
        x = rng.standard_normal((N, K)).astype(np.float32)
        copies = max(1, a.cold * 10**6 // len(wq)) if a.cold else 1
        runs = [("ref", ref, [make(base, cbuft, cbuft, wq, K, M, x) for _ in range(copies)]),
                ("nat", nat, [make(base, base.ggml_backend_dev_buffer_type(dev), cbuft, wq, K, M, x) for _ in range(copies)])]
        if a.lib_b:
            runs.append(("b", nat_b, [make(base, base.ggml_backend_dev_buffer_type(dev_b), cbuft, wq, K, M, x)
                                      for _ in range(copies)]))
        t = {k: [] for k, _, _ in runs}
        for i in range(a.reps):
            for k, be, gs in runs:
                g = gs[i % copies]
                t0 = time.perf_counter()
                base.ggml_backend_graph_compute(be, g)
                t[k].append(1000 * (time.perf_counter() - t0))
        r, n = t["ref"], t["nat"]
        line = (f"| {M} x {K}, {N} | {min(r):.3f} / {statistics.median(r):.3f} | {min(n):.3f} / {statistics.median(n):.3f} | "
                f"x{statistics.median(r) / statistics.median(n):.2f} | {rate(wq, M, K, N, min(n))} |")
        if a.lib_b:
            b = t["b"]
            line += (f" {min(b):.3f} / {statistics.median(b):.3f} | x{statistics.median(r) / statistics.median(b):.2f} | "
                     f"{rate(wq, M, K, N, min(b))} |")
        print(line, flush=True)


if __name__ == "__main__":
    main()
