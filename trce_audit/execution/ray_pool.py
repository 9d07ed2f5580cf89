"""The Ray executor: a pool of long-lived worker actors that keep their loaded pipelines.

Each actor is a :class:`~.worker.Worker` (``num_gpus``/``num_cpus`` per ``--*-per-worker``) and is
asked, before any shard, whether it runs the driver's package versions; one that does not is refused
and the run stops. An accepted actor imports torch and diffusers as it starts (seconds on a CPU), so
its first shard costs what the others do. Shards go out breadth first, two per actor (so a GPU never
waits on the driver's commit; a job may ask for one, as a batch of erases does), and come back as
they finish; the driver alone writes the store. A dead actor is restarted and its calls in flight
retried at most ``max_retries`` times (Ray retries system failures only, never an exception the job
raised); past that the run fails with one line and a rerun resumes from the stored shards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import deque
from typing import Any, Iterator, Sequence

from ..errors import ConfigError, TrceAuditError, mask_url_secrets, one_line
from ..versions import package_versions
from .base import Executor, ShardJob
from .options import ExecutorOptions
from .worker import Worker

NAMESPACE = "trce-audit"
IN_FLIGHT_PER_WORKER = 2


class WorkerLost(TrceAuditError):
    """A worker died and the retries allowed for its shards are spent."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'trce-audit[ray]'") from None
    return ray


def check_address(address: str, *, connect: bool = True) -> None:
    """A HOST:PORT must be one (a port 0-65535, a host the resolver can take) and, with ``connect``, accept
    a connection: one that does not is named in one line (Ray itself would wait minutes). ``auto`` and
    ``ray://`` addresses are Ray's to check. Errors show the address without any password in it."""
    if address == "auto" or "://" in address:
        return
    shown = mask_address(address)
    host, _, port = address.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535 or "\x00" in host:
        raise ConfigError(f"--address {shown!r} is not auto, HOST:PORT (a port 0-65535) or ray://HOST:PORT")
    if not connect:
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name the IDNA codec refuses (a label over 63 characters)
        raise ConfigError(f"no Ray cluster answers at --address {shown}: {getattr(exc, 'strerror', None) or one_line(exc)}") from None


def mask_address(address: str) -> str:
    """A cluster address as it may be shown: a password in ``ray://user:password@host`` replaced by ***."""
    return mask_url_secrets(address)


def _connect(ray: Any, options: ExecutorOptions, device: str) -> bool:
    """Join the named cluster, else start one on this machine listening on localhost only. Returns
    whether this process started it (and so stops it)."""
    if ray.is_initialized():
        return False
    if options.address:
        check_address(options.address)
        try:
            ray.init(address=options.address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            reason = one_line(str(exc)).replace(options.address, mask_address(options.address))
            raise ConfigError(f"cannot join the Ray cluster at --address {mask_address(options.address)}: {reason}") from None
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        return False
    # --workers given: just enough CPUs for them; else every CPU and GPU of this machine
    cpus = {"num_cpus": options.workers * options.cpus_per_worker} if options.workers else {}
    ray.init(namespace=NAMESPACE, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="ERROR", **cpus)
    return True


def _gpus_per_worker(options: ExecutorOptions, device: str) -> float:
    if options.gpus_per_worker is not None:
        return options.gpus_per_worker
    return 1.0 if device.startswith("cuda") else 0.0


def _default_workers(ray: Any, options: ExecutorOptions, gpus: float) -> int:
    resources = ray.cluster_resources()
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus))
    return max(1, int(resources.get("CPU", 1) // options.cpus_per_worker))


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, options: ExecutorOptions, *, device: str = "cpu"):
        ray = self._ray = _import_ray()
        self.options = options
        # inside an actor Ray sets CUDA_VISIBLE_DEVICES, so cuda:N names a GPU the actor cannot see
        self.device = "cuda" if device.startswith("cuda") else device
        self._started = _connect(ray, options, device)
        try:
            self._start_workers(ray, options)
        except BaseException:
            self.close()
            raise

    def _start_workers(self, ray: Any, options: ExecutorOptions) -> None:
        gpus = _gpus_per_worker(options, self.device)
        count = options.workers or _default_workers(ray, options, gpus)
        token = uuid.uuid4().hex[:8]
        actor = ray.remote(Worker)
        self._actors = [
            actor.options(name=f"trce-gpu-{i}-{token}", namespace=NAMESPACE, num_cpus=options.cpus_per_worker,
                          num_gpus=gpus, max_restarts=options.max_retries, max_task_retries=options.max_retries)
            .remote(threads=options.cpus_per_worker)
            for i in range(count)
        ]
        self.names = [f"trce-gpu-{i}-{token}" for i in range(count)]
        expected = package_versions()
        verdicts = ray.get([a.check.remote(expected) for a in self._actors], timeout=600)
        for name, verdict in zip(self.names, verdicts):
            if verdict is not None:
                raise ConfigError(f"Ray worker {name} refused: {verdict}")
        try:  # imports, in parallel, before any shard
            ray.get([a.warm.remote() for a in self._actors], timeout=600)
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise ConfigError(f"a Ray worker cannot import torch and diffusers: {one_line(f'{type(cause).__name__}: {cause}')}") from None
        self._gpu = gpus

    def worker_pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self._actors])

    def runtime(self) -> dict[str, Any]:
        return {"executor": "ray", "workers": len(self._actors), "gpus_per_worker": self._gpu,
                "cpus_per_worker": self.options.cpus_per_worker, "max_retries": self.options.max_retries}

    def map_unordered(self, job: ShardJob, shards: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        job_ref = ray.put(job)
        queue = deque(range(len(shards)))
        pending: dict[Any, tuple[int, int]] = {}
        load = [0] * len(self._actors)
        try:
            yield from self._drain(job, job_ref, shards, queue, pending, load)
        finally:  # a caller that stops early (an error, a kill) leaves no call running for it
            self._cancel(pending)

    def _drain(self, job: ShardJob, job_ref: Any, shards: Sequence[Any], queue: deque, pending: dict, load: list[int]) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        depth = getattr(job, "in_flight_per_worker", IN_FLIGHT_PER_WORKER)
        while queue or pending:
            for level in range(1, depth + 1):  # breadth first: every idle worker gets a call before any gets two
                for slot in range(len(self._actors)):
                    if queue and load[slot] < level:
                        index = queue.popleft()
                        pending[self._actors[slot].run.remote(job_ref, shards[index])] = (index, slot)
                        load[slot] += 1
            (ready,), _ = ray.wait(list(pending), num_returns=1)
            index, slot = pending.pop(ready)
            load[slot] -= 1
            try:
                result = ray.get(ready)
            except ray.exceptions.RayTaskError as exc:  # the job raised: its own error, no retry
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, BaseException) else exc.as_instanceof_cause()) from None
            except ray.exceptions.RayError as exc:
                raise WorkerLost(
                    f"shard {index + 1} of {len(shards)}: Ray worker {self.names[slot]} was lost and "
                    f"--max-retries {self.options.max_retries} is spent ({type(exc).__name__}); rerun to resume"
                ) from None
            yield index, result

    def _cancel(self, pending: dict) -> None:
        for ref in list(pending):
            try:
                self._ray.cancel(ref)
            except Exception:  # an already finished or lost call
                pass

    def close(self) -> None:
        ray = self._ray
        for actor in getattr(self, "_actors", []):
            try:
                ray.kill(actor)
            except Exception:
                pass
        self._actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()
