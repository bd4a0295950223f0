"""The batch on a Ray cluster (asrgguf/cluster.py): a real two-node cluster on this machine
(ray.cluster_utils.Cluster, one CPU a node), the tiny checkpoint, espeak clips. Outputs must be
byte-identical to the local batch's, whole and present once after an actor or a node dies in the
middle, and a rerun skips everything."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from conftest import ROOT, espeak

from asrgguf import cluster, cluster_files
from asrgguf.loading import EngineConfig

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
N = 8
DIES_ON = "rec3"   # a deterministic fault: the worker that begins this input dies (its restart redoes it)
PIDS: set[int] = set()   # the pool's actor processes seen; none may outlive the module's cluster


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One cluster for the module (Ray start-up is slow): a head and a worker node, one CPU each.
    The nodes' processes inherit this environment: this source tree first on their path."""
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ
                                                         else [])),
           "ASRGGUF_CACHE": str(tmp_path_factory.mktemp("cache")),   # where shipped model files land
           "ASRGGUF_TEST_WORKER_DIES_ON": DIES_ON}   # every job's worker dies on its first try of this input
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()
    for pid in PIDS:  # a worker whose raylet was killed under it (remove_node) can stay behind idle
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    for i in range(N):
        espeak(d / f"rec{i}.wav", " ".join(WORDS[i:] + WORDS[:i]) + f" number {i}", speed=150 + 5 * i)
    return d


@pytest.fixture(scope="module")
def pair(gguf_pair, ck_gqa):
    return gguf_pair(ck_gqa, "q8_0")


_LOCAL: dict = {}


@pytest.fixture(scope="module")
def local(pair, inputs, tmp_path_factory):
    """local(fmt) -> the local batch's output directory (`asrgguf run`, no Ray, the workers' 1 thread)."""
    def make(fmt):
        if fmt not in _LOCAL:
            out = tmp_path_factory.mktemp(f"local-{fmt}")
            r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", "--gguf", str(pair[0]), str(inputs),
                                "--output-dir", str(out), "--format", fmt, "--threads", "1", "--quiet"],
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, r.stderr
            _LOCAL[fmt] = out
        return _LOCAL[fmt]
    return make


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def run_job(pair, inputs, out, fmt, **kw):
    lines = []
    res = cluster.run([str(inputs)], str(out), EngineConfig(gguf=str(pair[0])), ray="auto", workers=2,
                      threads_per_worker=1, fmt=fmt, report=lines.append, **kw)
    PIDS.update(res.workers)
    return res, lines


def test_same_outputs_as_local_batch_then_rerun_skips(ray_cluster, pair, inputs, local, tmp_path):
    ref = local("srt")
    out = tmp_path / "out"
    # ship_model=True: the model files travel through the object store although the path is shared
    res, lines = run_job(pair, inputs, out, "srt", ship_model=True)
    assert lines == []
    s = res.summary
    assert (s.done, s.skipped, s.failed) == (N, 0, 0)
    assert names(out) == names(ref) == [f"rec{i}.srt" for i in range(N)]
    for name in names(ref):  # srt: text and times, no run-dependent timings
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert len({w.node for w in res.workers.values()}) == 2  # both nodes worked
    assert res.retried == {str(inputs / f"{DIES_ON}.wav"): 2}   # the worker died on it, it was done again
    assert sum(w.files for w in res.workers.values()) == N
    shipped = list(Path(os.environ["ASRGGUF_CACHE"], "ray-models").glob("*.gguf"))
    assert sorted(p.name.split("-", 2)[2] for p in shipped) == sorted([pair[0].name, pair[1].name])

    res2, lines = run_job(pair, inputs, out, "srt")
    assert (res2.summary.done, res2.summary.skipped, res2.summary.failed) == (0, N, 0) and lines == []
    assert res2.workers == {}   # nothing to do: no actor started


def _deterministic(path: Path) -> dict:
    d = json.loads(path.read_text())
    d.pop("timings")  # stage times differ run to run; everything else must match
    return d


def test_actor_killed_in_the_middle(ray_cluster, pair, inputs, local, tmp_path):
    ref = local("json")
    out = tmp_path / "out"
    killed = []

    def on_file(row):
        if not killed:  # the worker that finished first is killed while on its next file
            killed.append(row["pid"])
            os.kill(row["pid"], signal.SIGKILL)

    res, lines = run_job(pair, inputs, out, "json", on_file=on_file)
    assert lines == [] and killed
    assert (res.summary.done, res.summary.failed) == (N, 0)
    assert names(out) == names(ref)  # every output once, no temp file left
    for name in names(ref):
        assert _deterministic(out / name) == _deterministic(ref / name), name
    # the killed actor had worked; whether its restarted process gets a file depends on how fast the
    # survivor empties the queue (on a quiet machine it often takes the rest first), so that is not asserted
    assert killed[0] in res.workers and sum(w.files for w in res.workers.values()) >= N, res.workers
    # rec3's worker died on it (the planted fault) and the killed actor's file in flight, if it had begun
    # one, was tried again: each twice, no more
    assert res.retried[str(inputs / f"{DIES_ON}.wav")] == 2 and set(res.retried.values()) == {2}, res.retried


def test_node_removed_in_the_middle(ray_cluster, pair, inputs, local, tmp_path):
    ref = local("srt")
    out = tmp_path / "out"
    removed = []

    def on_file(row):
        node = next(iter(ray_cluster.worker_nodes))
        if not removed and row["node"] == node.node_id:
            # the worker node's actor, just on its next file, goes with its node; a fresh node joins,
            # as an autoscaler's would
            removed.append(node.node_id)
            ray_cluster.remove_node(node)
            ray_cluster.add_node(num_cpus=1)

    res, lines = run_job(pair, inputs, out, "srt", on_file=on_file)
    assert lines == [] and removed
    assert (res.summary.done, res.summary.failed) == (N, 0)
    assert names(out) == names(ref)
    for name in names(ref):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    nodes = {w.node for w in res.workers.values()}
    # the removed node had worked before it went; the fresh node may or may not get a file (timing)
    assert removed[0] in nodes and len(nodes) >= 2, nodes
    assert res.retried[str(inputs / f"{DIES_ON}.wav")] == 2 and set(res.retried.values()) == {2}, res.retried


def test_bad_inputs_reported_as_locally_job_goes_on(ray_cluster, pair, inputs, tmp_path):
    import numpy as np
    import soundfile as sf

    (tmp_path / "garbage.wav").write_bytes(b"RIFF....WAVEfmt nonsense")      # fails its probe (the driver)
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16000)      # fails in the worker: too short
    args = [str(inputs / "rec0.wav"), str(tmp_path / "garbage.wav"), str(tmp_path / "short.wav"),
            str(tmp_path / "missing.wav")]
    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", "--gguf", str(pair[0]), *args, "--output-dir",
                        str(tmp_path / "local"), "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    want = [ln[len("asrgguf: error: "):] for ln in r.stderr.splitlines() if ln.startswith("asrgguf: error: ")]
    assert len(want) == 3, r.stderr
    lines = []
    res = cluster.run(args, str(tmp_path / "o"), EngineConfig(gguf=str(pair[0])), ray="auto", workers=1,
                      report=lines.append)
    PIDS.update(res.workers)
    assert (res.summary.done, res.summary.failed) == (1, 3)
    assert lines == want
    assert names(tmp_path / "o") == ["rec0.txt"]
    assert (tmp_path / "o/rec0.txt").read_bytes() == (tmp_path / "local/rec0.txt").read_bytes()


def test_word_times_aligner_no_native_and_line_width_reach_the_workers(ray_cluster, inputs, tmp_path):
    """`run --ray` with --timestamps word (the demo aligner, shipped to the workers), --no-native and
    --max-line-chars writes exactly the files the local batch writes (json: words and their times; srt: the
    cues' lines), and the workers ran with the native backend off: the demo decoder is q8_0, which the backend
    takes wherever it is not turned off, and the workers' json says `model.native` off."""
    files = [str(inputs / f"rec{i}.wav") for i in range(3)]
    opts = ["--model", "demo", "--timestamps", "word", "--aligner", "demo", "--no-native", "--max-line-chars", "20",
            "--threads", "1", "--quiet"]
    for fmt in ("json", "srt"):
        out = {}
        for where, extra in (("local", []), ("ray", ["--ray", ray_cluster.address, "--workers", "2",
                                                    "--threads-per-worker", "1"])):
            out[where] = tmp_path / f"{where}-{fmt}"
            r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", *files, "--output-dir", str(out[where]),
                                "--format", fmt, *opts, *extra], capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, (where, r.stderr[-3000:])
        assert names(out["ray"]) == names(out["local"]) == [f"rec{i}.{fmt}" for i in range(3)]
        for name in names(out["local"]):
            if fmt == "srt":
                assert (out["ray"] / name).read_bytes() == (out["local"] / name).read_bytes(), name
                text = [ln for ln in (out["ray"] / name).read_text().splitlines()
                        if ln and not ln.isdigit() and "-->" not in ln]
                assert text and max(map(len, text)) <= 20, text   # --max-line-chars reached the workers
                continue
            got, want = _deterministic(out["ray"] / name), _deterministic(out["local"] / name)
            assert got == want, name
            assert got["model"]["native"] == {"used": False, "reason": "off"}, got["model"]
            words = [w for seg in got["segments"] for w in seg["words"]]
            assert words and all(w["start"] <= w["end"] for w in words), got["segments"]
            assert got["timing"] == "word"


def test_bad_address_and_no_ray_are_one_line(pair, inputs, tmp_path):
    args = ["run", "--gguf", str(pair[0]), str(inputs / "rec0.wav"), "--output-dir", str(tmp_path / "o")]
    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", *args, "--ray", "127.0.0.1:9"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("asrgguf: error: --ray 127.0.0.1:9: cannot connect to a Ray cluster (nothing "
                               "answers at "), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", *args, "--workers", "2"], capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode, r.stderr) == (1, "asrgguf: error: --workers and --threads-per-worker go with --ray\n")
    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", "--gguf", str(pair[0]), str(inputs / "rec0.wav"),
                        "--ray", "local"], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stderr) == (1, "asrgguf: error: --ray needs --output-dir (the workers write one output "
                                           "per input)\n")
    code = ("import sys; sys.modules['ray'] = None\nfrom asrgguf.cli import cli_main\n"
            f"sys.argv = ['asrgguf'] + {args + ['--ray', 'local']!r}\ncli_main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (r.returncode, r.stderr) == (1, "asrgguf: error: --ray needs Ray: pip install 'asrgguf[ray]' "
                                           "(or pip install 'ray[data]')\n")


def test_fsspec_outputs(tmp_path):
    import fsspec

    url = "memory://asrgguf-test/out/a.txt"
    assert not cluster_files.url_exists(url)
    cluster_files.write_url(url, "hello\n")
    assert cluster_files.url_exists(url)
    assert fsspec.open(url, "rb").open().read() == b"hello\n"
    assert cluster_files.local_root(f"file://{tmp_path}") == tmp_path
    assert cluster_files.local_root("memory://x/y") is None
    assert cluster_files.local_root(str(tmp_path)) == tmp_path
