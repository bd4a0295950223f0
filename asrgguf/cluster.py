"""Batch transcription on a Ray cluster: the local batch's rules, run by an actor pool.

`asrgguf run INPUTS... --output-dir OUT --ray local|auto|ADDRESS` (or `cluster.run(...)` from Python)
plans the batch exactly as the local run does (`batch.plan`: the same input expansion, output names,
skip/overwrite rules and error reports, all on the driver), then hands the files to a Ray Data actor
pool: each actor loads the model once (`EngineConfig.load`, the same config as the driver's, every option
included) and runs `batch.transcribe_one` on one
file at a time, writing its output atomically. The driver streams the per-file results back for the
progress bar and the same summary line as a local batch.

Fault tolerance is Ray's: pool actors are restarted when they (or their node) die (max_restarts=-1) and
the file in flight is retried on the new actor (max_task_retries); an output is a temp file renamed
into place, so a file done twice is written whole twice and never half. A file whose worker dies on
it every time is reported failed, the job goes on.

The model reaches the workers from its path when a worker sees the same file there (a shared file
system, or a copy at the same place); otherwise a small actor on the driver's node serves the files
in chunks through Ray's object store and each node caches them once (ASRGGUF_CACHE/ray-models).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import batch
from .errors import AsrggufError
from .cluster_files import (Coordinator, is_url, local_copy, local_root, model_files, url_exists, url_fs,
                            write_url)
from .loading import EngineConfig
from .options import DEFAULT_LINE_CHARS, Options

MAX_TRIES = 3             # a file whose worker died on it this many times is reported failed, not tried again


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise AsrggufError("--ray needs Ray: pip install 'asrgguf[ray]' (or pip install 'ray[data]')") from None
    return ray


def connect(address: str) -> bool:
    """Start (`local`) or join (`auto`, an address) a Ray cluster; True when this call started it.
    An already initialized Ray (a notebook's) is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kw = dict(log_to_driver=False, logging_level="ERROR", configure_logging=True)
    try:
        if address == "local":
            # the workers import this asrgguf (a source tree too): they inherit the raylet's environment
            here = str(Path(__file__).resolve().parents[1])
            old = os.environ.get("PYTHONPATH")
            os.environ["PYTHONPATH"] = os.pathsep.join([here] + ([old] if old else []))
            try:
                ray.init(include_dashboard=False, **kw)
            finally:
                if old is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = old
        else:
            _probe(address)
            ray.init(address=address, **kw)
    except Exception as e:  # ConnectionError, ValueError, RuntimeError: one line either way
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AsrggufError(f"--ray {address}: cannot connect to a Ray cluster ({msg})") from None
    return True


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a cluster address nobody answers at: ray.init retries such an address for minutes."""
    if address.startswith("ray://"):
        return  # Ray Client: ray.init reports it
    try:
        from ray._private.services import canonicalize_bootstrap_address

        addr = canonicalize_bootstrap_address(address)
    except (ImportError, AttributeError):
        return
    if addr is None:  # auto without a running cluster: ray.init says so at once
        return
    host, _, port = addr.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as e:
        raise ConnectionError(f"nothing answers at {addr}: {getattr(e, 'strerror', None) or e}") from None


# --------------------------------------------------------------------------- the pool's actor
class Worker:
    """One pool actor: loads the model once, then transcribes one file per call (batch_size=1)."""

    def __init__(self, engine: EngineConfig, files: dict, opts: dict, fmt: str, max_line_chars: int, store,
                 ship: bool | None = None):
        import ray

        t0 = time.perf_counter()
        self.fmt, self.opts, self.max_line_chars = fmt, opts, max_line_chars
        self.fatal = None
        self.tr = None
        self.store = store
        self.node = ray.get_runtime_context().get_node_id()
        try:  # the model files at a path of this node (the engine's fields name the driver's paths)
            local = {k: local_copy(spec, store, ship) for k, spec in files.items()}
            self.tr = dataclasses.replace(engine, **local).load()
        except Exception as e:  # the driver stops the job with this line (as a local load error would)
            self.fatal = batch.failure_message(engine.gguf, e)
        self.start_s = time.perf_counter() - t0

    def __call__(self, rows: dict) -> dict:
        import ray

        out: dict[str, list] = {k: [] for k in ("i", "error", "fatal", "duration", "start_s", "seconds", "pid",
                                                "node", "peak_rss_mb")}
        for i, source, dest in zip(rows["i"], rows["source"], rows["out"]):
            t0 = time.perf_counter()
            error, duration = "", 0.0
            source, dest = str(source), str(dest)
            tries = ray.get(self.store.attempt.remote(int(i))) if self.fatal is None else 0
            if tries == 1 and Path(source).stem == os.environ.get("ASRGGUF_TEST_WORKER_DIES_ON"):
                os._exit(1)   # tests: the worker dies on its first try of this input (a deterministic fault)
            if tries > MAX_TRIES:
                error = f"{source}: its worker died on it {MAX_TRIES} times; not transcribed"
            elif self.fatal is None:
                try:
                    res, _ = batch.transcribe_one(self.tr, source, self.fmt, self.opts,
                                                  dest if is_url(dest) else Path(dest),
                                                  write=write_url if is_url(dest) else None,
                                                  max_line_chars=self.max_line_chars)
                    duration = float(res.duration)
                except Exception as e:  # one bad input must not stop the batch
                    error = batch.failure_message(source, e)
            out["i"].append(int(i))
            out["error"].append(error)
            out["fatal"].append(self.fatal or "")
            out["duration"].append(duration)
            out["start_s"].append(self.start_s)
            out["seconds"].append(time.perf_counter() - t0)
            out["pid"].append(os.getpid())
            out["node"].append(self.node)
            out["peak_rss_mb"].append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return out


# --------------------------------------------------------------------------- the driver
@dataclass
class WorkerStats:
    node: str
    start_s: float            # model load (and fetch) time of this actor
    files: int = 0
    audio_s: float = 0.0      # audio it transcribed
    busy_s: float = 0.0       # time it spent on files
    peak_rss_mb: float = 0.0


@dataclass
class Result:
    summary: batch.Summary
    wall_s: float = 0.0
    workers: dict[int, WorkerStats] = field(default_factory=dict)   # by process id
    retried: dict[str, int] = field(default_factory=dict)           # input -> tries, for inputs tried again
    errors: list[str] = field(default_factory=list)                 # error lines (when no report is given)

    @property
    def audio_per_second(self) -> float:
        return self.summary.audio_seconds / self.wall_s if self.wall_s else 0.0


def run(inputs: list[str] | str, output_dir: str, engine: EngineConfig, *, ray: str = "local",
        workers: int | None = None, threads_per_worker: int | None = None, fmt: str = "txt",
        overwrite: bool = False, options: dict | None = None, max_line_chars: int = DEFAULT_LINE_CHARS,
        num_gpus: float = 0, ship_model: bool | None = None, on_plan: Callable[[float], None] | None = None,
        on_file: Callable[[dict], None] | None = None, report: Callable[[str], None] | None = None) -> Result:
    """Transcribe files, directories or globs on a Ray cluster into OUTPUT_DIR/NAME.FMT (a local or
    shared path, or an fsspec URL such as s3://bucket/out) with the model `engine` names; returns the
    summary and per-worker figures.

    ray: "local" (start Ray here), "auto" or "HOST:PORT" (join a running cluster); an already
    initialized Ray is used as it is. workers: pool size (default: the cluster's CPUs // threads);
    threads_per_worker: CPUs each actor reserves and uses (1). options: `Transcriber.transcribe`'s
    keywords. ship_model: None sends the model files through the object store only to nodes that lack
    them, True always, False never. on_plan(total audio seconds) is called once the batch is planned;
    on_file(row) with each file's result (i, source, out, error, duration, pid, node, ...);
    report(line) with each error line (default: kept in `Result.errors`)."""
    from .writers import FORMATS

    import_ray()  # without Ray: one line, before anything else
    inputs = [inputs] if isinstance(inputs, (str, Path)) else [str(a) for a in inputs]
    if fmt not in FORMATS:
        raise AsrggufError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    opts = dict(options or {})
    Options.make(**opts)
    threads = threads_per_worker or 1
    if threads < 1 or (workers is not None and workers < 1):
        raise AsrggufError("--workers and --threads-per-worker must be at least 1")
    engine = dataclasses.replace(engine.check(word_timestamps=opts.get("timestamps") == "word"), threads=threads)
    output_dir = str(output_dir)
    root = local_root(output_dir)
    if root is not None:
        batch.check_output_dir(root)
    else:
        try:
            fs, path = url_fs(output_dir)
            fs.makedirs(path, exist_ok=True)
        except Exception as e:
            raise AsrggufError(f"{output_dir}: cannot use as output directory ({type(e).__name__}: {e})") from None
    engine, files = model_files(engine)

    summary = batch.Summary()
    result = Result(summary)
    report = report or result.errors.append
    if root is not None:
        plan = batch.plan(inputs, root, fmt, overwrite, summary, report)
        dests = {i: str(p) for i, p in plan.outs.items()}
    else:
        base = output_dir.rstrip("/")
        plan = batch.plan(inputs, Path(""), fmt, overwrite, summary, report,
                          exists=lambda p: url_exists(f"{base}/{p.as_posix()}"), clean=False)
        dests = {i: f"{base}/{p.as_posix()}" for i, p in plan.outs.items()}
    if on_plan is not None:
        on_plan(plan.total_seconds)
    if not plan.todo:  # nothing to transcribe: no cluster, no model
        result.wall_s = time.perf_counter() - summary.t0
        return result

    started = connect(ray)
    try:
        _execute(plan, dests, engine, files, opts, fmt, max_line_chars, threads, workers, ship_model, num_gpus,
                 result, report, on_file)
    finally:
        if started:
            import ray as ray_mod

            ray_mod.shutdown()
    result.wall_s = time.perf_counter() - summary.t0
    return result


def _execute(plan, dests, engine, files, opts, fmt, max_line_chars, threads, workers, ship, num_gpus, result, report,
             on_file):
    import ray
    from ray.data import ActorPoolStrategy, DataContext
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    import logging

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    ctx.max_consecutive_actor_init_deaths = 3

    summary = result.summary
    # a zero-CPU helper pinned to the driver's node (model files for nodes that lack them, tries per file)
    node = ray.get_runtime_context().get_node_id()
    store = ray.remote(num_cpus=0)(Coordinator).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote([f["path"] for f in files.values()])
    if workers is None:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, cpus // threads)
    workers = max(1, min(workers, len(plan.todo)))
    rows = [{"i": i, "source": plan.items[i].source, "out": dests[i]} for i in plan.todo]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        Worker, batch_size=1, batch_format="numpy",
        compute=ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
        num_cpus=threads, num_gpus=num_gpus or None,   # Ray Data's actors: max_restarts=-1, max_task_retries=-1
        fn_constructor_kwargs=dict(engine=engine, files=files, opts=opts, fmt=fmt, max_line_chars=max_line_chars,
                                   store=store, ship=ship))
    seen: set[int] = set()
    try:
        for row in ds.iter_rows():
            i = int(row["i"])
            if row["fatal"]:
                raise AsrggufError(str(row["fatal"]))
            if i in seen:  # a retried file reported twice: counted once
                continue
            seen.add(i)
            pid = int(row["pid"])
            w = result.workers.setdefault(pid, WorkerStats(str(row["node"]), float(row["start_s"])))
            w.files += 1
            w.audio_s += float(row["duration"])
            w.busy_s += float(row["seconds"])
            w.peak_rss_mb = max(w.peak_rss_mb, float(row["peak_rss_mb"]))
            if row["error"]:
                report(str(row["error"]))
                summary.failed += 1
            else:
                summary.done += 1
                summary.audio_seconds += float(row["duration"])
            if on_file is not None:
                on_file({"i": i, "source": plan.items[i].source, "out": dests[i], "error": str(row["error"]),
                         "duration": float(row["duration"]), "seconds": float(row["seconds"]), "pid": pid,
                         "node": str(row["node"]), "start_s": float(row["start_s"]),
                         "peak_rss_mb": float(row["peak_rss_mb"])})
        with contextlib.suppress(Exception):
            result.retried = {plan.items[i].source: n for i, n in ray.get(store.retried.remote()).items()}
    except AsrggufError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise AsrggufError(f"the Ray job failed: {type(e).__name__}: {msg[0] if msg else ''}") from None
    finally:
        with contextlib.suppress(Exception):
            ray.kill(store)
    for i in plan.todo:  # cannot happen (every file gives a row); counted rather than lost if it does
        if i not in seen:
            report(f"{plan.items[i].source}: no result came back from the cluster")
            summary.failed += 1
    for i in plan.todo:  # temp files of killed workers (a redo cleaned its own; this catches the rest)
        if not is_url(dests[i]):
            batch.clean_stale(Path(dests[i]))
