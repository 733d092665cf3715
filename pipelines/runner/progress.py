"""Progress of long commands: items done/total, rate and ETA on a terminal; quiet elsewhere.

On a terminal (stderr is a TTY) :class:`ItemProgress` draws one ``rich`` progress bar
(``detect  ━━━━━━━━━━━━━   120/300  40%  7.3 images/s  0:00:24``). When stderr is not a terminal
(Airflow task logs, CI, pipes) it draws nothing and :meth:`ItemProgress.shard_done` logs one summary
line per shard instead (``detect shard 3: 300 images in 41.2 s, 7.3 images/s; detections=812 ...``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("hopchain.progress")


def interactive() -> bool:
    """True when stderr is a terminal (progress bars make sense there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class ItemProgress:
    """A progress bar over ``total`` items (``unit``: "images", "shards"), used as a context manager.

    ``enabled=None`` decides by :func:`interactive`. Safe to use when disabled: every call is cheap.
    """

    def __init__(self, what: str, total: int, *, unit: str = "images", enabled: bool | None = None):
        self.what = what
        self.total = int(total)
        self.unit = unit
        self.enabled = interactive() if enabled is None else enabled
        self.done = 0
        self._bar: Any = None
        self._task: Any = None
        self._shard_t0 = time.monotonic()
        self._shard_done0 = 0

    def __enter__(self) -> ItemProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, rate="")
        self._shard_t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def advance(self, n: int = 1) -> None:
        """``n`` more items done."""
        self.done += n
        if self._bar is not None:
            speed = self._bar.tasks[0].speed
            rate = f"{speed:.1f} {self.unit}/s" if speed else ""
            self._bar.update(self._task, advance=n, rate=rate)

    def describe(self, text: str) -> None:
        """Change the bar's label (e.g. ``detect shard 3``)."""
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def shard_done(self, shard: int, counts: Mapping[str, Any] | None = None) -> str:
        """One summary line for a finished shard: logged when no bar is drawn; returned either way."""
        took = time.monotonic() - self._shard_t0
        items = self.done - self._shard_done0
        rate = items / took if took > 0 else 0.0
        shown = ", ".join(f"{k}={v}" for k, v in (counts or {}).items()
                          if k not in ("images",) and isinstance(v, int | float) and not isinstance(v, bool))
        line = (f"{self.what} shard {shard}: {items} {self.unit} in {took:.1f} s, {rate:.1f} {self.unit}/s"
                f" ({self.done}/{self.total} done)" + (f"; {shown}" if shown else ""))
        if self._bar is None:
            log.info(line)
        self._shard_t0 = time.monotonic()
        self._shard_done0 = self.done
        return line
