"""What a template prints or logs while it trains or evaluates becomes MESSAGE records of its trial
log, in order — as Rafiki captured them. Sizes are capped: each line at ``MAX_LINE_CHARS``, each
command at ``MAX_LINES`` lines (then one record says how many more were dropped).

``print`` writes to ``sys.stdout``; ``logging`` records reach a handler on the root logger, which
is at INFO while capturing (a template that configured it keeps its own level). Output written
straight to file descriptor 1 or 2 by C code is not captured: it goes to the runner's stderr.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from typing import Callable, Iterator

MAX_LINE_CHARS = 2000
MAX_LINES = 5000


class _Lines:
    """Turns written text into capped lines, handed to ``emit`` one by one."""

    def __init__(self, emit: Callable[[str], None]):
        self._emit = emit
        self._lock = threading.Lock()
        self._partial = ""
        self.lines = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        with self._lock:
            self._partial += text
            *complete, self._partial = self._partial.split("\n")
            for line in complete:
                self._line(line)
            if len(self._partial) > MAX_LINE_CHARS:  # a line without end: cut it here
                self._line(self._partial)
                self._partial = ""

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        if self.lines >= MAX_LINES:
            self.dropped += 1
            return
        self.lines += 1
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f"… ({len(line) - MAX_LINE_CHARS} more characters)"
        self._emit(line)

    def close(self) -> None:
        with self._lock:
            if self._partial:
                self._line(self._partial)
                self._partial = ""
            if self.dropped:
                self._emit(f"… {self.dropped} more lines of output were dropped (limit {MAX_LINES})")
                self.dropped = 0


class _Stream(io.TextIOBase):
    def __init__(self, lines: _Lines):
        self._lines = lines

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._lines.write(text)
        return len(text)


class _Handler(logging.Handler):
    def __init__(self, lines: _Lines):
        super().__init__()
        self._lines = lines
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("duma."):
            return  # the platform's own logging, not the template's
        try:
            self._lines.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def captured(emit: Callable[[str], None]) -> Iterator[None]:
    """Sends the template's prints and log records to ``emit`` (one line each) meanwhile."""
    lines = _Lines(emit)
    root = logging.getLogger()
    handler = _Handler(lines)
    previous_stdout, previous_level = sys.stdout, root.level
    sys.stdout = _Stream(lines)
    root.addHandler(handler)
    if root.level == logging.WARNING:  # the default: nobody chose it
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        if root.level == logging.INFO and previous_level == logging.WARNING:
            root.setLevel(previous_level)
        sys.stdout = previous_stdout
        lines.close()
