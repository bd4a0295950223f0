"""A load's stages (llama.cpp's decoder load, `import torch`, the encoder's weights) with their start and end in
the transcription's timings: the decoder loads in a thread while torch and the encoder load (CPU builds)."""
from __future__ import annotations


def test_timings_give_each_load_stage_start_and_end(ck_gqa, gguf_pair, clip5):
    from asrgguf.transcribe import Transcriber

    dec, mm = gguf_pair(ck_gqa, "q8_0")
    tr = Transcriber.from_gguf(dec, mm, threads=2, max_new_tokens=4)
    try:
        segs, info = tr.transcribe(str(clip5), language="English")
        list(segs)
    finally:
        tr.close()
    st = info.timings["load_stages"]
    assert set(st) == {"decoder", "import_torch", "encoder"}, st
    for name, s in st.items():
        assert 0.0 <= s["start"] <= s["end"] <= info.timings["load"] + 1e-3, (name, s, info.timings["load"])
    assert st["import_torch"]["end"] <= st["encoder"]["start"]
    # overlapped, not in series: the decoder's load starts before the encoder's ends
    assert st["decoder"]["start"] < st["encoder"]["end"]


_GOMP_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
#include <sys/syscall.h>
static long main_calls = 0, other_calls = 0;
void GOMP_parallel(void (*fn)(void *), void *data, unsigned n, unsigned flags) {
    static void (*real)(void (*)(void *), void *, unsigned, unsigned) = 0;
    if (!real) real = dlsym(RTLD_NEXT, "GOMP_parallel");
    if (syscall(SYS_gettid) == getpid()) main_calls++; else other_calls++;
    real(fn, data, n, flags);
}
long shim_main_calls(void) { return main_calls; }
long shim_other_calls(void) { return other_calls; }
"""

_PROBE = r"""
import ctypes, sys
from asrgguf.transcribe import Transcriber
shim = ctypes.CDLL(sys.argv[3])
shim.shim_main_calls.restype = shim.shim_other_calls.restype = ctypes.c_long
tr = Transcriber.from_gguf(sys.argv[1], sys.argv[2], threads=2)
print(shim.shim_main_calls(), shim.shim_other_calls())
"""


def test_load_runs_no_openmp_work_on_the_callers_thread(ck_gqa, gguf_pair, tmp_path):
    """The caller's thread opens no OpenMP region while loading (an LD_PRELOAD shim counts GOMP_parallel calls
    per thread): a thread that has run OpenMP work keeps a libgomp team, and with the engine thread's team on a
    2-core machine libgomp stops spinning its workers, which halved the decode speed of a live stream's engine
    thread (docs/streaming.md, "Latency after two fixes")."""
    import os
    import subprocess
    import sys

    dec, mm = gguf_pair(ck_gqa, "q8_0")
    src = tmp_path / "shim.c"
    src.write_text(_GOMP_SHIM)
    lib = tmp_path / "libgompshim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"], check=True)
    env = dict(os.environ, LD_PRELOAD=str(lib))
    out = subprocess.run([sys.executable, "-c", _PROBE, str(dec), str(mm), str(lib)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    main_calls, other_calls = map(int, out.stdout.split()[-2:])
    assert other_calls > 0          # the shim sees the load's OpenMP work (on the load's threads)
    assert main_calls == 0
