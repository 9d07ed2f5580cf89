"""The in-process executor: today's path, shards in order, one worker that keeps its pipelines."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from .base import Executor, ShardJob
from .worker import Worker


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self._worker = Worker()

    def map_unordered(self, job: ShardJob, shards: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        for index, shard in enumerate(shards):
            yield index, self._worker.run(job, shard)

    def close(self) -> None:
        self._worker.drop()
