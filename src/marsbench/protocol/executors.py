"""Executors: where the runs of a sweep execute. One small interface, three engines.

- `LocalExecutor`: in this process, one run at a time (debugging, a single GPU).
- `ProcessExecutor`: a local pool of spawned processes (``concurrent.futures``).
- `RayExecutor`: one Ray task per run, with ``num_gpus`` / ``num_cpus`` per task, on a local Ray
  runtime or a cluster (``address``).

Workers only compute: `execute` turns a `RunTask` into a `RunRecord` (a failure too, never an
exception), the record travels back to the driver, and only the driver writes the store. That
keeps SQLite on one machine's local disk (its locking is unreliable on network filesystems) and
makes an executor swappable without touching how results are kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..runs.record import RunRecord
from ..runs.spec import RunSpec

EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to run one spec (all plain, picklable values)."""

    spec: RunSpec
    weights_path: str | None = None
    device: str | None = None
    out_dir: str | None = None
    threads: int | None = None  # torch CPU threads in the worker; None leaves torch's default


def execute(task: RunTask) -> RunRecord:
    """Run one task; any exception becomes a failed record carrying its traceback (marked
    ``extra["environment_error"]`` for a `MarsbenchError`, which the driver never stores)."""
    try:
        if task.threads:
            import torch

            torch.set_num_threads(task.threads)
        from ..training.run import run_experiment

        return run_experiment(task.spec, weights_path=task.weights_path, device=task.device,
                              out_dir=task.out_dir)
    except Exception as exc:  # noqa: BLE001 - every failure travels back as a record
        record = RunRecord.failure(task.spec, exc)
        from ..errors import MarsbenchError

        if isinstance(exc, MarsbenchError):
            # bad input or a missing piece of the environment (data, weights, options): not a
            # result; the driver stores nothing and stops the sweep with this line
            record.extra["environment_error"] = " ".join(str(exc).split())
        return record


class Executor(ABC):
    """Submit tasks, then collect finished ``(task, record)`` pairs as they come."""

    name: str = "executor"
    capacity: int = 1  # how many tasks the driver keeps in flight at once

    @abstractmethod
    def submit(self, task: RunTask) -> None: ...

    @abstractmethod
    def wait(self, timeout: float | None = None) -> list[tuple[RunTask, RunRecord]]:
        """Block until at least one task finished (or ``timeout`` s); return the finished."""

    @property
    @abstractmethod
    def in_flight(self) -> int: ...

    def close(self, cancel: bool = False) -> None:
        """Release workers; ``cancel`` drops tasks not finished (an interrupted sweep)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close(cancel=exc[0] is not None)


class LocalExecutor(Executor):
    """Runs each task in this process when `wait` is called."""

    name, capacity = "local", 1

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._queue: deque[RunTask] = deque()

    def submit(self, task: RunTask) -> None:
        self._queue.append(task)

    def wait(self, timeout: float | None = None) -> list[tuple[RunTask, RunRecord]]:
        if not self._queue:
            return []
        task = self._queue.popleft()
        if self.threads and not task.threads:
            task = replace(task, threads=self.threads)
        return [(task, execute(task))]

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def close(self, cancel: bool = False) -> None:
        self._queue.clear()


def _die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: end this worker when the sweep that started it ends, however it
    ends (kill -9 included), so no orphan keeps training and holding a GPU.

    Linux: the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``). Elsewhere a
    daemon thread checks once a second that the parent is still the parent.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent_pid:  # the parent died before prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass  # no usable libc: fall back to watching

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="marsbench-parent-watch", daemon=True).start()


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned processes (spawn: no forked torch/CUDA state).

    A worker that dies (out of memory, a segfault in a library) breaks the pool; its tasks are
    resubmitted once to a fresh pool, and a task lost twice is recorded as failed. Workers die
    with the sweep: killed by ``close(cancel=True)`` (Ctrl-C, SIGTERM, an error in the driver)
    and, if the driver itself is killed, by the kernel (see `_die_with_parent`).
    """

    name = "process"

    def __init__(self, workers: int | None = None, threads: int | None = None,
                 function: Callable[[RunTask], RunRecord] = execute) -> None:
        self.function = function  # module-level (picklable); tests swap in their own
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.capacity = self.workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.workers)
        self._futures: dict[cf.Future, RunTask] = {}
        self._lost: dict[str, int] = {}
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers,
                                      mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_die_with_parent, initargs=(os.getpid(),))

    def submit(self, task: RunTask) -> None:
        if not task.threads:
            task = replace(task, threads=self.threads)
        self._futures[self._pool.submit(self.function, task)] = task

    def wait(self, timeout: float | None = None) -> list[tuple[RunTask, RunRecord]]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), timeout=timeout,
                          return_when=cf.FIRST_COMPLETED)
        out, broken = [], []
        for future in done:
            task = self._futures.pop(future)
            try:
                out.append((task, future.result()))
            except cf.process.BrokenProcessPool:
                broken.append(task)
            except Exception as exc:  # noqa: BLE001 - e.g. a record that failed to unpickle
                out.append((task, RunRecord.failure(task.spec, exc)))
        if broken:
            out += self._recover(broken)
        return out

    def _recover(self, broken: list[RunTask]) -> list[tuple[RunTask, RunRecord]]:
        # Every other future of a broken pool fails too: collect them, start a fresh pool.
        broken += list(self._futures.values())
        self._futures.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()
        out = []
        for task in broken:
            self._lost[task.spec.key] = self._lost.get(task.spec.key, 0) + 1
            if self._lost[task.spec.key] >= 2:
                out.append((task, RunRecord.failure(
                    task.spec, "the worker process running this spec died twice (killed, out "
                               "of memory or crashed); see the system log")))
            else:
                self.submit(task)
        return out

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    def close(self, cancel: bool = False) -> None:
        # shutdown() lets running tasks finish; a cancelled sweep stops its workers now
        workers = list((getattr(self._pool, "_processes", None) or {}).values()) if cancel else []
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        for process in workers:
            if process.is_alive():
                process.kill()
        for process in workers:
            process.join(timeout=5)
        self._futures.clear()


class RayExecutor(Executor):
    """One Ray task per run. Uses the Ray runtime already initialised in this process, or
    starts one (``address``: a cluster's, or None for a local runtime of ``workers`` CPUs).

    ``gpus_per_run`` / ``cpus_per_run`` are the task's resource request; Ray runs as many at
    once as the cluster's resources allow, and at most ``workers`` (when given) are kept in
    flight by the driver.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, *, gpus_per_run: float = 0.0,
                 cpus_per_run: float = 1.0, address: str | None = None,
                 threads: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError("the ray executor needs Ray: pip install 'marsbench[ray]'") \
                from exc
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif workers:
                kwargs["num_cpus"] = workers
            ray.init(**kwargs)
            self._started = True
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = max(1, workers or int(cluster_cpus // max(cpus_per_run, 1e-9)) or 1)
        self.threads = threads or max(1, int(cpus_per_run))
        self._remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run)(execute)
        self._refs: dict = {}

    def submit(self, task: RunTask) -> None:
        if not task.threads:
            task = replace(task, threads=self.threads)
        self._refs[self._remote.remote(task)] = task

    def wait(self, timeout: float | None = None) -> list[tuple[RunTask, RunRecord]]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                out.append((task, self._ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - worker crash, node lost, ...
                out.append((task, RunRecord.failure(task.spec, exc)))
        return out

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                self._ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started:
            self._ray.shutdown()


def make_executor(kind: str = "local", workers: int | None = None, *, gpus_per_run: float = 0.0,
                  cpus_per_run: float = 1.0, ray_address: str | None = None,
                  threads: int | None = None) -> Executor:
    """An executor by name: ``local``, ``process`` or ``ray``."""
    if kind == "local":
        return LocalExecutor(threads=threads)
    if kind == "process":
        return ProcessExecutor(workers, threads=threads)
    if kind == "ray":
        return RayExecutor(workers, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run,
                           address=ray_address, threads=threads)
    raise ValueError(f"unknown executor {kind!r}; use one of {', '.join(EXECUTORS)}")
