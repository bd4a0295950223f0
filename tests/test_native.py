"""asrgguf's native ggml backend (native/, asrgguf/native.py) against llama.cpp's own q8_0 products.

The reference is always llama.cpp's own product on the same GGUF (the backend switched off, or ggml's
CPU backend for a single product). The backend registers with ggml once per process, so the decoder
runs are subprocesses (tests/support/native_probe.py). The library is built here when it is missing
(tools/build_native.sh: CMake + the llama-cpp-python sdist's ggml headers)."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "support" / "native_probe.py"


@pytest.fixture(scope="session")
def native_lib() -> Path:
    from asrgguf import native

    path = native.find_library()
    if path is None:
        r = subprocess.run(["bash", str(ROOT / "tools" / "build_native.sh")], cwd=ROOT, capture_output=True,
                           text=True, env={**os.environ, "PYTHON": sys.executable})
        assert r.returncode == 0, f"tools/build_native.sh failed:\n{r.stdout}\n{r.stderr}"
        path = native.find_library()
    assert path is not None and path.is_file()
    return path


def clean_env() -> dict:
    """The environment for the subprocesses: no ASRGGUF_NO_NATIVE / ASRGGUF_NATIVE_* of the caller's, except
    ASRGGUF_NATIVE_ISA=none, which runs this module as on a CPU without AVX2 (`ASRGGUF_NATIVE_ISA=none pytest
    tests/test_native.py`: the kernel tests skip, the rest pass)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("ASRGGUF_N")}
    if os.environ.get("ASRGGUF_NATIVE_ISA") == "none":
        e["ASRGGUF_NATIVE_ISA"] = "none"
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def probe(gguf: Path, out: Path, native: str = "default", env: dict | None = None, steps: int = 6) -> dict:
    e = clean_env()
    e.update(env or {})
    r = subprocess.run([sys.executable, str(PROBE), str(gguf), str(out), "--native", native, "--steps", str(steps)],
                       capture_output=True, text=True, env=e, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["logits"] = np.load(out)
    return res


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


@pytest.fixture(scope="session")
def kernels(native_lib) -> int:
    """The ISA the CPU gives the kernels (1 AVX2, 2 AVX-512 VNNI); tests that run them skip on a CPU with neither
    (absent hardware: there the backend declines and llama.cpp's own products run, tested below)."""
    from asrgguf import native
    import llama_cpp  # noqa: F401

    lib = ctypes.CDLL(str(native_lib))
    isa = lib.asrgguf_native_detected_isa()
    if isa == 0:
        pytest.skip("this CPU has no AVX2 + FMA: the native kernels cannot run here")
    return isa


@pytest.fixture(scope="session")
def q8_runs(ck_gqa, gguf_pair, native_lib, tmp_path_factory):
    """llama.cpp's own products, the native backend (best ISA), and the native backend forced to AVX2."""
    dec, _ = gguf_pair(ck_gqa, "q8_0")
    tmp = tmp_path_factory.mktemp("native")
    return {
        "ref": probe(dec, tmp / "ref.npy", "off"),
        "native": probe(dec, tmp / "native.npy", "default"),
        "avx2": probe(dec, tmp / "avx2.npy", "default", {"ASRGGUF_NATIVE_ISA": "avx2"}),
        "dec": dec, "tmp": tmp,
    }


def _products_in_file(gguf_path: Path) -> tuple[int, int]:
    """(q8_0 weight matrices that are matrix products in llama.cpp's graph, layers), read from the GGUF:
    every 2-D q8_0 tensor but token_embd, which the graph only gathers rows from (GET_ROWS) unless the
    file has no output.weight and it is the output matrix too."""
    from gguf import GGMLQuantizationType, GGUFReader

    r = GGUFReader(str(gguf_path))
    names = {t.name for t in r.tensors}
    mats = [t.name for t in r.tensors if t.tensor_type == GGMLQuantizationType.Q8_0 and len(t.shape) == 2
            and (t.name != "token_embd.weight" or "output.weight" not in names)]
    layers = int(next(f for k, f in r.fields.items() if k.endswith(".block_count")).contents())
    return len(mats), layers


def test_native_takes_the_q8_0_products(q8_runs, kernels):
    ref, nat = q8_runs["ref"], q8_runs["native"]
    assert ref["native"] == {"used": False, "reason": "off"}
    weights, layers = _products_in_file(q8_runs["dec"])
    assert weights > 2 * layers   # several products per layer and the output matrix: a real count
    assert nat["native"]["used"] is True and nat["native"]["weights"] == weights, (nat, weights)
    # products computed: one prefill batch (40 positions < n_batch) runs every weight's product once; each
    # decode step observed (one id each) runs them again plus each layer's two attention products, KQ and
    # KQV over the f16 KV cache (prefill attention stays with llama.cpp's CPU backend)
    steps = len(nat["ids"])
    assert steps == 6 and nat["ids"] == ref["ids"]
    assert nat["stats"]["products"] == weights + steps * (weights + 2 * layers), (nat["stats"], weights, layers)
    assert nat["native"]["isa"] == native_isa_name(kernels)


def native_isa_name(code: int) -> str:
    from asrgguf import native

    return native.ISA_NAMES[code]


@pytest.mark.parametrize("run", ["native", "avx2"])
def test_native_logits_match_llama_cpp(q8_runs, kernels, run):
    ref, got = q8_runs["ref"], q8_runs[run]
    if run == "avx2":
        assert got["native"]["isa"] == "avx2"   # forced, whatever the CPU has
    assert got["logits"].shape == ref["logits"].shape
    err = rel_l2(got["logits"], ref["logits"])
    assert err < 1e-4, f"{run}: logits relative L2 error {err:.2e} vs llama.cpp's q8_0 products"
    for i in range(len(ref["logits"])):   # every step, not only on average
        assert rel_l2(got["logits"][i], ref["logits"][i]) < 1e-4
    assert got["ids"] == ref["ids"]


def test_native_missing_or_broken_library_falls_back(q8_runs, tmp_path):
    ref = q8_runs["ref"]
    bogus = tmp_path / "libasrgguf_native.so"
    bogus.write_bytes(b"not a shared library")
    for lib in (tmp_path / "missing.so", bogus):
        got = probe(q8_runs["dec"], tmp_path / "out.npy", "default", {"ASRGGUF_NATIVE_LIB": str(lib)})
        assert got["native"]["used"] is False and got["native"]["reason"], got["native"]
        assert np.array_equal(got["logits"], ref["logits"])   # exactly llama.cpp's own run
        assert got["ids"] == ref["ids"]


def test_native_declines_on_a_cpu_without_avx2(q8_runs, tmp_path):
    """A CPU without AVX2 + FMA (simulated with ASRGGUF_NATIVE_ISA=none, so this runs on every machine): the
    backend is not registered, the reason is said, and the run is exactly llama.cpp's own."""
    got = probe(q8_runs["dec"], tmp_path / "out.npy", "default", {"ASRGGUF_NATIVE_ISA": "none"})
    assert got["native"] == {"used": False, "reason": "the CPU has neither AVX2 nor AVX-512 VNNI"}
    assert got["status"] == {"loaded": False, "reason": "the CPU has neither AVX2 nor AVX-512 VNNI"}
    assert got["stats"]["products"] == 0
    assert np.array_equal(got["logits"], q8_runs["ref"]["logits"])
    assert got["ids"] == q8_runs["ref"]["ids"]


def test_native_env_var_turns_it_off(q8_runs, tmp_path):
    got = probe(q8_runs["dec"], tmp_path / "out.npy", "default", {"ASRGGUF_NO_NATIVE": "1"})
    assert got["native"] == {"used": False, "reason": "off"}
    assert np.array_equal(got["logits"], q8_runs["ref"]["logits"])


def test_native_leaves_f32_exact_mode_alone(ck_gqa, gguf_pair, native_lib, tmp_path):
    dec, _ = gguf_pair(ck_gqa, "f32")
    got = probe(dec, tmp_path / "f32.npy", "default")
    assert got["native"] == {"used": False, "reason": "f32 decoder (exact mode)"}
    assert got["status"]["loaded"] is False     # not even registered for an f32 decoder


# --- one real-shape product through ggml: the backend's device and buffer vs ggml's CPU backend

class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


def _ggml():
    import llama_cpp.llama_cpp as L

    lib_dir = Path(L.__file__).resolve().parent / "lib"
    base = ctypes.CDLL(str(lib_dir / "libggml-base.so.0"))
    cpu = ctypes.CDLL(str(lib_dir / "libggml-cpu.so.0"))
    P = ctypes.c_void_p
    sig = {
        (base, "ggml_init"): (P, [_InitParams]),
        (base, "ggml_free"): (None, [P]),
        (base, "ggml_new_tensor_2d"): (P, [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
        (base, "ggml_mul_mat"): (P, [P, P, P]),
        (base, "ggml_new_tensor_3d"): (P, [P, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]),
        (base, "ggml_view_3d"): (P, [P, P, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_size_t,
                                     ctypes.c_size_t, ctypes.c_size_t]),
        (base, "ggml_permute"): (P, [P, P, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
        (base, "ggml_soft_max_ext"): (P, [P, P, P, ctypes.c_float, ctypes.c_float]),
        (base, "ggml_cont_2d"): (P, [P, P, ctypes.c_int64, ctypes.c_int64]),
        (base, "ggml_backend_dev_supports_op"): (ctypes.c_bool, [P, P]),
        (base, "ggml_new_graph"): (P, [P]),
        (base, "ggml_build_forward_expand"): (None, [P, P]),
        (base, "ggml_backend_alloc_ctx_tensors_from_buft"): (P, [P, P]),
        (base, "ggml_backend_buffer_set_usage"): (None, [P, ctypes.c_int]),
        (base, "ggml_backend_buffer_free"): (None, [P]),
        (base, "ggml_backend_tensor_set"): (None, [P, P, ctypes.c_size_t, ctypes.c_size_t]),
        (base, "ggml_backend_tensor_get"): (None, [P, P, ctypes.c_size_t, ctypes.c_size_t]),
        (base, "ggml_backend_graph_compute"): (ctypes.c_int, [P, P]),
        (base, "ggml_backend_free"): (None, [P]),
        (base, "ggml_backend_reg_dev_get"): (P, [P, ctypes.c_size_t]),
        (base, "ggml_backend_dev_init"): (P, [P, ctypes.c_char_p]),
        (base, "ggml_backend_dev_buffer_type"): (P, [P]),
        (cpu, "ggml_backend_cpu_init"): (P, []),
        (cpu, "ggml_backend_cpu_set_n_threads"): (None, [P, ctypes.c_int]),
        (cpu, "ggml_backend_cpu_buffer_type"): (P, []),
    }
    for (lib, name), (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return base, cpu


def _product(base, backend, buft_w, buft_x, wq: bytes, K: int, M: int, x: np.ndarray, set_isa=None) -> np.ndarray:
    GGML_TYPE_F32, GGML_TYPE_Q8_0, USAGE_WEIGHTS = 0, 8, 1
    N = x.shape[0]
    cw = base.ggml_init(_InitParams(1 << 20, None, True))
    cx = base.ggml_init(_InitParams(1 << 20, None, True))
    try:
        w = base.ggml_new_tensor_2d(cw, GGML_TYPE_Q8_0, K, M)
        b = base.ggml_new_tensor_2d(cx, GGML_TYPE_F32, K, N)
        c = base.ggml_mul_mat(cx, w, b)
        gf = base.ggml_new_graph(cx)
        base.ggml_build_forward_expand(gf, c)
        bw = base.ggml_backend_alloc_ctx_tensors_from_buft(cw, buft_w)
        bx = base.ggml_backend_alloc_ctx_tensors_from_buft(cx, buft_x)
        base.ggml_backend_buffer_set_usage(bw, USAGE_WEIGHTS)
        base.ggml_backend_tensor_set(w, wq, 0, len(wq))
        xx = np.ascontiguousarray(x, np.float32)
        base.ggml_backend_tensor_set(b, xx.ctypes.data, 0, xx.nbytes)
        back = ctypes.create_string_buffer(len(wq))            # the weights read back through the buffer
        base.ggml_backend_tensor_get(w, back, 0, len(wq))
        assert back.raw == wq
        assert base.ggml_backend_graph_compute(backend, gf) == 0
        out = np.zeros((N, M), np.float32)
        base.ggml_backend_tensor_get(c, out.ctypes.data, 0, out.nbytes)
        base.ggml_backend_buffer_free(bw)
        base.ggml_backend_buffer_free(bx)
        return out
    finally:
        base.ggml_free(cw)
        base.ggml_free(cx)


@pytest.mark.parametrize("K,M", [(1024, 3072), (3072, 1024)])
def test_native_real_shape_product_matches_ggml_cpu(native_lib, kernels, K, M):
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    base, cpu = _ggml()
    lib = ctypes.CDLL(str(native_lib))   # its ggml_backend_init, not registered with llama.cpp's registry
    lib.ggml_backend_init.restype = ctypes.c_void_p
    lib.asrgguf_native_set_isa.restype = ctypes.c_int
    lib.asrgguf_native_detected_isa.restype = ctypes.c_int
    reg = lib.ggml_backend_init()
    dev = base.ggml_backend_reg_dev_get(reg, 0)
    nat = base.ggml_backend_dev_init(dev, None)
    ref_be = cpu.ggml_backend_cpu_init()
    cpu.ggml_backend_cpu_set_n_threads(ref_be, 2)
    cpu_buft = cpu.ggml_backend_cpu_buffer_type()
    rng = np.random.default_rng(K)
    wf = (rng.standard_normal((M, K)) * 0.05).astype(np.float32)
    wq = quantize(wf, GGMLQuantizationType.Q8_0).tobytes()
    isas = [2, 1] if lib.asrgguf_native_detected_isa() == 2 else [1]
    try:
        # decode, a few sequences, one kernel tile, a tile and one column, prefill with a remainder, a prefill batch
        for n in (1, 2, 3, 8, 9, 77, 256):
            x = rng.standard_normal((n, K)).astype(np.float32)
            ref = _product(base, ref_be, cpu_buft, cpu_buft, wq, K, M, x)
            for isa in isas:
                assert lib.asrgguf_native_set_isa(isa) == isa
                got = _product(base, nat, base.ggml_backend_dev_buffer_type(dev), cpu_buft, wq, K, M, x)
                err = rel_l2(got, ref)
                assert err < 1e-5, f"isa {isa}, n={n}: relative L2 error {err:.2e} vs ggml's CPU q8_0 product"
    finally:
        lib.asrgguf_native_set_isa(lib.asrgguf_native_detected_isa())
        base.ggml_backend_free(nat)
        base.ggml_backend_free(ref_be)


def test_native_product_with_minus_128_quants_matches_ggml_cpu(native_lib, kernels):
    """A q8_0 weight may hold -128 (llama.cpp's quantizer never writes it, a file can): the AVX2 sign trick
    takes |w| = 128 as an unsigned byte, as ggml's own AVX2 dot does; every column count, both ISA paths."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    base, cpu = _ggml()
    lib, dev, nat = _native_backend(base, native_lib)
    ref_be = cpu.ggml_backend_cpu_init()
    cpu_buft = cpu.ggml_backend_cpu_buffer_type()
    K, M = 256, 64
    rng = np.random.default_rng(7)
    blocks = quantize((rng.standard_normal((M, K)) * 0.05).astype(np.float32), GGMLQuantizationType.Q8_0)
    blocks = np.frombuffer(blocks.tobytes(), np.uint8).reshape(M * K // 32, 34).copy()
    quants = blocks[:, 2:]
    quants[rng.random(quants.shape) < 0.2] = 0x80                 # -128 in a fifth of the places
    wq = blocks.tobytes()
    isas = [2, 1] if kernels == 2 else [1]
    try:
        for n in range(1, 10):
            x = rng.standard_normal((n, K)).astype(np.float32)
            ref = _product(base, ref_be, cpu_buft, cpu_buft, wq, K, M, x)
            for isa in isas:
                assert lib.asrgguf_native_set_isa(isa) == isa
                got = _product(base, nat, base.ggml_backend_dev_buffer_type(dev), cpu_buft, wq, K, M, x)
                assert rel_l2(got, ref) < 1e-6, f"isa {isa}, n={n}: relative L2 error {rel_l2(got, ref):.2e}"
    finally:
        lib.asrgguf_native_set_isa(lib.asrgguf_native_detected_isa())
        base.ggml_backend_free(nat)
        base.ggml_backend_free(ref_be)


def _native_backend(base, native_lib):
    lib = ctypes.CDLL(str(native_lib))   # its ggml_backend_init, not registered with llama.cpp's registry
    lib.ggml_backend_init.restype = ctypes.c_void_p
    lib.asrgguf_native_set_isa.restype = ctypes.c_int
    lib.asrgguf_native_detected_isa.restype = ctypes.c_int
    dev = base.ggml_backend_reg_dev_get(lib.ggml_backend_init(), 0)
    return lib, dev, base.ggml_backend_dev_init(dev, None)


def _attention(base, backend, buft, q, kc, vc, mask, scale, dev=None):
    """llama.cpp's decode attention without flash attention (llm_graph_context::build_attn_mha) over an f16
    KV cache as llama.cpp keeps it: K rows per position (all KV heads), V transposed (a row per channel).
    q (n_tokens, n_head, hd); kc (kv_size, n_kv_head * hd) f16; vc (n_kv_head * hd, kv_size) f16; mask
    (n_tokens, n_kv). Returns the CONT'ed output (n_tokens, n_head * hd), and with dev, whether the device
    supports each of KQ, softmax, KQV and CONT."""
    F32, F16 = 0, 1
    nt, nh, hd = q.shape
    kv_size, nkv = kc.shape[0], kc.shape[1] // hd
    n_kv = mask.shape[1]
    ctx = base.ggml_init(_InitParams(1 << 20, None, True))
    try:
        K = base.ggml_new_tensor_2d(ctx, F16, nkv * hd, kv_size)
        V = base.ggml_new_tensor_2d(ctx, F16, kv_size, nkv * hd)
        Q = base.ggml_new_tensor_3d(ctx, F32, hd, nh, nt)
        M = base.ggml_new_tensor_2d(ctx, F32, n_kv, nt)
        k = base.ggml_permute(ctx, base.ggml_view_3d(ctx, K, hd, nkv, n_kv, hd * 2, nkv * hd * 2, 0), 0, 2, 1, 3)
        kq = base.ggml_mul_mat(ctx, k, base.ggml_permute(ctx, Q, 0, 2, 1, 3))
        sm = base.ggml_soft_max_ext(ctx, kq, M, scale, 0.0)
        v = base.ggml_permute(ctx, base.ggml_view_3d(ctx, V, n_kv, nkv, hd, kv_size * hd * 2, kv_size * 2, 0),
                              0, 2, 1, 3)
        kqv = base.ggml_mul_mat(ctx, v, sm)
        out = base.ggml_cont_2d(ctx, base.ggml_permute(ctx, kqv, 0, 2, 1, 3), hd * nh, nt)
        gf = base.ggml_new_graph(ctx)
        base.ggml_build_forward_expand(gf, out)
        buf = base.ggml_backend_alloc_ctx_tensors_from_buft(ctx, buft)
        for t, a in ((K, kc), (V, vc), (Q, q), (M, mask)):
            a = np.ascontiguousarray(a)
            base.ggml_backend_tensor_set(t, a.ctypes.data, 0, a.nbytes)
        supported = [base.ggml_backend_dev_supports_op(dev, t) for t in (kq, sm, kqv, out)] if dev else None
        res = np.zeros((nt, nh * hd), np.float32)
        if backend is not None:
            assert base.ggml_backend_graph_compute(backend, gf) == 0
            base.ggml_backend_tensor_get(out, res.ctypes.data, 0, res.nbytes)
        base.ggml_backend_buffer_free(buf)
        return res, supported
    finally:
        base.ggml_free(ctx)


def _attention_f64(q, kc, vc, mask, scale):
    """ggml's arithmetic for that graph in float64: q rounded to f16 (ggml's vec_dot type for an f16 K),
    softmax of KQ * scale + mask, probabilities rounded to f16 for the product with V."""
    nt, nh, hd = q.shape
    nkv, n_kv = kc.shape[1] // hd, mask.shape[1]
    qh = q.astype(np.float16).astype(np.float64)
    k = kc[:n_kv].astype(np.float64).reshape(n_kv, nkv, hd)
    v = vc[:, :n_kv].astype(np.float64).reshape(nkv, hd, n_kv)
    out = np.zeros((nt, nh, hd))
    for t in range(nt):
        for h in range(nh):
            g = h // (nh // nkv)
            s = k[:, g, :] @ qh[t, h] * scale + mask[t]
            p = np.exp(s - s.max())
            out[t, h] = v[g] @ (p / p.sum()).astype(np.float16).astype(np.float64)
    return out.reshape(nt, nh * hd)


@pytest.mark.parametrize("nt,nh,nkv,hd,kv_size,n_kv,n_valid", [
    (1, 16, 8, 128, 1280, 1024, 900),   # a 0.6B / 1.7B decode step (GQA 2:1) late in a 60-s piece
    (3, 4, 2, 64, 256, 250, 240),       # several tokens, lengths that are not a multiple of the vector width
])
def test_native_decode_attention_matches_ggml_cpu(native_lib, kernels, nt, nh, nkv, hd, kv_size, n_kv, n_valid):
    """The decode attention the backend takes (KQ over the f16 K cache, masked softmax, KQV over the V^T
    cache, CONT) against the same arithmetic in float64 and against ggml's CPU backend on the same graph and
    buffers, both ISA paths. (On the second shape ggml's own CPU ops are 2e-5 from the float64 result, the
    backend 1e-7.)"""
    base, cpu = _ggml()
    lib, dev, nat = _native_backend(base, native_lib)
    ref_be = cpu.ggml_backend_cpu_init()
    cpu.ggml_backend_cpu_set_n_threads(ref_be, 2)
    cpu_buft = cpu.ggml_backend_cpu_buffer_type()
    rng = np.random.default_rng(hd + nt)
    q = rng.standard_normal((nt, nh, hd)).astype(np.float32)
    kc = rng.standard_normal((kv_size, nkv * hd)).astype(np.float16)
    vc = rng.standard_normal((nkv * hd, kv_size)).astype(np.float16)
    mask = np.zeros((nt, n_kv), np.float32)
    for t in range(nt):   # causal: token t of the batch sees the positions before n_valid - (nt - 1 - t)
        mask[t, n_valid - (nt - 1 - t):] = -np.inf
    scale = np.float32(1.0 / np.sqrt(hd))
    exact = _attention_f64(q, kc, vc, mask, scale)
    isas = [2, 1] if lib.asrgguf_native_detected_isa() == 2 else [1]
    try:
        ref, _ = _attention(base, ref_be, cpu_buft, q, kc, vc, mask, scale)
        assert rel_l2(ref, exact) < 1e-4   # ggml's own CPU ops against the same arithmetic in float64
        for isa in isas:
            assert lib.asrgguf_native_set_isa(isa) == isa
            got, supported = _attention(base, nat, cpu_buft, q, kc, vc, mask, scale, dev)
            assert supported == [True, True, True, True]
            err, err_ggml = rel_l2(got, exact), rel_l2(got, ref)
            assert err < 1e-5, f"isa {isa}: relative L2 error {err:.2e} vs the float64 attention"
            assert err_ggml < 1e-4, f"isa {isa}: relative L2 error {err_ggml:.2e} vs ggml's CPU attention"
        # a prefill batch (256 tokens) stays with llama.cpp's CPU backend: none of its attention ops is taken
        q256 = rng.standard_normal((256, nh, hd)).astype(np.float32)
        _, supported = _attention(base, None, cpu_buft, q256, kc, vc, np.zeros((256, n_kv), np.float32), scale, dev)
        assert supported == [False, False, False, False]
    finally:
        lib.asrgguf_native_set_isa(lib.asrgguf_native_detected_isa())
        base.ggml_backend_free(nat)
        base.ggml_backend_free(ref_be)


_PARALLEL_SCRIPT = r"""
import json, sys
from asrgguf import Transcriber, native
with Transcriber.from_gguf(sys.argv[1], threads=2) as t:
    kw = dict(max_new_tokens=24, piece_seconds=10.0)
    s0 = native.stats()["products"]
    together = t.transcribe_all(sys.argv[2], parallel=3, **kw)
    s1 = native.stats()["products"]
    alone = t.transcribe_all(sys.argv[2], parallel=1, **kw)
    print(json.dumps({"native": t.model_info["native"], "together": [s.token_ids for s in together.segments],
                      "alone": [s.token_ids for s in alone.segments], "products_together": s1 - s0}))
"""


def test_native_parallel_sequences_equal_each_alone(ck_gqa, gguf_pair, native_lib, kernels, real_files):
    """Pieces decoded as 3 parallel sequences of one context (3 KV streams: the decode attention over 3
    streams, products of 3 columns) give each piece exactly the ids it gets alone: the backend computes
    every column and every stream in the same order whatever the batch."""
    dec, mm = gguf_pair(ck_gqa, "q8_0")
    e = clean_env()
    r = subprocess.run([sys.executable, "-c", _PARALLEL_SCRIPT, str(dec), str(real_files["flac44"])],
                       capture_output=True, text=True, env=e, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["native"]["used"] is True, got["native"]
    assert len(got["alone"]) > 3 and got["products_together"] > 0
    assert got["together"] == got["alone"]


def test_native_cli_json_says_whether_it_was_used(native_lib, kernels):
    """The packaged demo model is q8_0: the json `model.native` says the backend was used, and
    --no-native gives llama.cpp's own products with the same transcript."""
    e = clean_env()
    out = {}
    for flag in ([], ["--no-native"]):
        r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", "--model", "demo",
                            str(ROOT / "asrgguf" / "data" / "demo" / "sample.wav"), "--format", "json", "--quiet",
                            "--threads", "2", *flag], capture_output=True, text=True, env=e, cwd=ROOT)
        assert r.returncode == 0, r.stderr[-2000:]
        out[bool(flag)] = json.loads(r.stdout)
    nat, off = out[False]["model"]["native"], out[True]["model"]["native"]
    assert nat["used"] is True and nat["weights"] > 0, nat
    assert off == {"used": False, "reason": "off"}
    assert out[False]["text"] == out[True]["text"]


def test_native_off_in_a_process_where_it_is_registered(q8_runs, kernels, tmp_path):
    """Once registered the backend stays registered: a decoder loaded afterwards with native=False
    keeps its weights on llama.cpp's CPU backend, bit-identical to a process that never loaded it."""
    e = clean_env()
    r = subprocess.run([sys.executable, str(PROBE.parent / "native_probe2.py"), str(q8_runs["dec"]),
                        str(tmp_path / "on.npy"), str(tmp_path / "off.npy")], capture_output=True, text=True, env=e,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    on_info, off_info = json.loads(r.stdout.strip().splitlines()[-1])
    assert on_info["used"] is True and off_info == {"used": False, "reason": "off"}
    ref = q8_runs["ref"]["logits"]
    assert np.array_equal(np.load(tmp_path / "off.npy"), ref)
    assert rel_l2(np.load(tmp_path / "on.npy"), ref) < 1e-4
