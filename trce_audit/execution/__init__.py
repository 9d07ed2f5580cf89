"""Where units of work run: in this process (``local``, the default) or on a Ray cluster's worker
actors (``ray``). Both run the same jobs through the same :class:`~.worker.Worker`, so the local suite
tests the code the cluster runs; the driver (this process) owns every store write either way.

Importing this package imports neither ray nor torch: an executor imports what it needs when made.
"""

from .base import Executor, ShardJob
from .factory import make_executor
from .options import EXECUTORS, ExecutorOptions

__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "ShardJob", "make_executor"]
