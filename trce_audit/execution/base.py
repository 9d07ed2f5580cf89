"""The executor interface: map a job over shards and hand back each shard's result as it is done."""

from __future__ import annotations

from typing import Any, ClassVar, Hashable, Iterator, Protocol, Sequence


class ShardJob(Protocol):
    """A picklable unit of work over shards. ``setup`` builds what a worker keeps between calls (a
    loaded pipeline) under ``cache_key``; ``run`` does one shard with it. ``expected`` is what a worker
    must match before it does any of the job (package versions, detector keys). A job may set
    ``in_flight_per_worker`` (default 2) to cap the calls queued on one worker at once."""

    cache_key: Hashable

    def setup(self) -> Any: ...

    def run(self, state: Any, shard: Any) -> Any: ...


class Executor:
    """Runs jobs over shards. Results come back unordered, tagged with their shard's index; a shard's
    result is returned at least once per success, so callers commit it idempotently."""

    name: ClassVar[str] = ""

    def map_unordered(self, job: ShardJob, shards: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def runtime(self) -> dict[str, Any]:
        """What a run's runtime record says about where it ran (never part of its identity)."""
        return {"executor": self.name}

    def close(self) -> None:
        """Release workers; an executor that started a cluster stops it."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
