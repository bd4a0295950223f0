"""Run a command as a child process and measure it as `/usr/bin/time -v` does: wall time and peak RSS.

Peak RSS comes from the rusage that os.wait4 returns for that one child: on Linux `ru_maxrss`
(kilobytes) is the largest resident set of the child or of any descendant it waited for; it is the
largest single process, not a sum over processes. macOS reports bytes; both are converted to MB
(2**20 bytes) here. No external tool is needed.

Figures: none of its own: the wall time, peak RSS and CPU caption of bench/compare.py, quantize.py, der.py and vad.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass


@dataclass
class ProcStats:
    returncode: int
    wall_s: float
    maxrss_mb: float
    user_s: float
    sys_s: float
    timed_out: bool = False


def _maxrss_mb(ru) -> float:
    kb = ru.ru_maxrss / 1024.0 if sys.platform == "darwin" else float(ru.ru_maxrss)
    return kb / 1024.0


def run_measured(cmd: list[str], stdout_path: str, stderr_path: str, cwd: str | None = None,
                 env: dict | None = None, timeout: float | None = None) -> ProcStats:
    """Run cmd with stdout/stderr to files; return its wall time and peak RSS (with its children)."""
    with open(stdout_path, "wb") as fo, open(stderr_path, "wb") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                             start_new_session=True)
        timed_out = threading.Event()

        def _kill():
            timed_out.set()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, _kill) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            while True:
                try:
                    _, status, ru = os.wait4(p.pid, 0)
                    break
                except InterruptedError:
                    continue
        except BaseException:  # KeyboardInterrupt: take the child (and its group) down with us
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.wait4(p.pid, 0)
            p.returncode = -9
            raise
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    return ProcStats(p.returncode, wall, _maxrss_mb(ru), ru.ru_utime, ru.ru_stime, timed_out.is_set())


if __name__ == "__main__":  # python bench/proc_stats.py CMD ...: a tiny `/usr/bin/time -v`
    import json

    if len(sys.argv) < 2:
        sys.exit("usage: proc_stats.py CMD [ARGS...]")
    st = run_measured(sys.argv[1:], "/dev/stdout", "/dev/stderr")
    print(json.dumps(st.__dict__), file=sys.stderr)
    sys.exit(st.returncode if st.returncode >= 0 else 128 - st.returncode)


def cpu_line() -> str:
    """The CPU's model name and the vector flags that decide the kernels, for every figure's caption."""
    model, flags = "", []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni",
                                     "avx512_bf16") if f in have]
                break
    except OSError:
        pass
    return f"{model or 'unknown CPU'} ({' '.join(flags) or 'no AVX2'})"
