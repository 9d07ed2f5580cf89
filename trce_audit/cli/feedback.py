"""What a command tells the user while it works: progress and warnings, on stderr.

On a terminal, progress is one Rich bar per stage. Elsewhere (a CI log) it is plain lines: one when a stage
starts, one when it ends, each with counts and elapsed time, and a heartbeat at least every
``HEARTBEAT_S`` seconds during a long stage so a log never goes quiet for minutes. Warnings print as one
``warning: …`` line each, once per text, without Python's source path and code line.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from typing import Any, Callable, TextIO

HEARTBEAT_S = 20.0  # under the promised 30 s, with room for a slow step between checks


def _elapsed(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _how_far(done: int, total: int, spent: float) -> str:
    """ "37/300 (12%), 1.2 min in this step, about 8.5 min left": the estimate assumes the rate so far."""
    share = f" ({100 * done / total:.0f}%)" if total else ""
    left = f", about {_elapsed(spent * (total - done) / done)} left" if 0 < done < total else ""
    return f"{done}/{total}{share}, {_elapsed(spent)} in this step{left}"


class _Heartbeat:
    """Calls ``beat()`` whenever ``quiet_for()`` reaches the interval, from a daemon thread."""

    def __init__(self, interval: float, quiet_for: Callable[[], float], beat: Callable[[], None]):
        self.interval, self.quiet_for, self.beat = interval, quiet_for, beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trce-audit-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            if self.quiet_for() >= self.interval:
                self.beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class PlainProgress:
    """(stage, done, total) callbacks as log lines; thread-safe so the heartbeat can print between them."""

    def __init__(self, stream: TextIO | None = None, interval: float = HEARTBEAT_S, clock: Callable[[], float] = time.monotonic):
        self.stream, self.interval, self.clock = stream or sys.stderr, interval, clock
        self.started = clock()
        self.last_line = self.started
        self.stages: dict[str, float] = {}
        self.finished: set[str] = set()
        self.steps = 0  # named steps (step()), numbered apart from the counted stages inside them
        self.current: tuple[str, int, int | None] | None = None
        self._lock = threading.Lock()
        self._heartbeat = _Heartbeat(interval, lambda: self.clock() - self.last_line, self._beat)

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
        self.last_line = self.clock()

    def _beat(self) -> None:
        with self._lock:
            if self.current is None:
                self._say(f"… working ({_elapsed(self.clock() - self.started)} elapsed)")
                return
            stage, done, total = self.current
            in_step = _elapsed(self.clock() - self.stages[stage])  # a named step's time, when it has no counts
            if total is None:  # a step named by step(): no counts inside it
                self._say(f"[{self.steps}] still on {stage}: {in_step} in this step, {_elapsed(self.clock() - self.started)} elapsed")
            else:
                self._say(f"{stage}: {_how_far(done, total, self.clock() - self.stages[stage])}")

    def __call__(self, stage: str, done: int, total: int) -> None:
        with self._lock:
            now = self.clock()
            if stage not in self.stages:
                self.stages[stage] = now
                self._say(f"{stage}: {done}/{total} started")
            if stage in self.finished:
                return  # a stage reported complete twice prints once
            self.current = (stage, done, total)
            if total and done >= total:
                self.finished.add(stage)
                self._say(f"{stage}: {done}/{total} done in {_elapsed(now - self.stages[stage])}")
                self.current = None
            elif now - self.last_line >= self.interval:
                self._say(f"{stage}: {_how_far(done, total, now - self.stages[stage])}")

    def step(self, message: str) -> None:
        """A new step named by its caller (the audit's erase/eval/attack lines)."""
        with self._lock:
            self.stages[message] = self.clock()
            self.current = (message, 0, None)
            self.steps += 1
            self._say(f"[{self.steps}] {message} ({_elapsed(self.clock() - self.started)} elapsed)")

    def close(self) -> None:
        self._heartbeat.stop()


class StageProgress:
    """Adapts the api's (stage, done, total) callbacks to Rich bars on a terminal, plain lines elsewhere.

    Output starts on the first callback, so input errors raised before any work print as one line."""

    def __init__(self, stream: TextIO | None = None, interval: float = HEARTBEAT_S) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.plain: PlainProgress | None = None
        self.bar: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.plain is not None:
            self.plain.close()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.stream.isatty():
            if self.plain is None:
                self.plain = PlainProgress(self.stream, self.interval)
            self.plain(stage, done, total)
            return
        if self.bar is None:
            self.bar = progress()
            self.bar.start()
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)


def progress():
    """A Rich progress bar on stderr, so --json output on stdout stays parseable."""
    from rich.console import Console  # deferred: --help stays fast
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


class WarningLines:
    """A ``warnings.showwarning`` that prints each warning's text once, as ``warning: …``."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self.seen: set[str] = set()

    def say(self, text: str) -> None:
        line = " ".join(str(text).split())
        if line in self.seen:
            return
        self.seen.add(line)
        (self.stream or sys.stderr).write(f"warning: {line}\n")

    def __call__(self, message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        self.say(str(message))


def install_warning_lines() -> WarningLines:
    """Route Python warnings to one line each (a command's own `warning:` lines use the same set)."""
    handler = WarningLines()
    warnings.showwarning = handler
    return handler


def say_warning(text: str) -> None:
    """Print a warning once, through the installed handler when there is one."""
    handler = warnings.showwarning
    if isinstance(handler, WarningLines):
        handler.say(text)
    else:
        sys.stderr.write(f"warning: {' '.join(str(text).split())}\n")
