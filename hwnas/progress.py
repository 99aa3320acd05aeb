"""Progress of long work on stderr, shared by the command line and the Python API: a tqdm bar in a terminal or a
notebook, plain lines at most every ``every_s`` seconds when stderr is a pipe or a file (CI logs, ``tee``), so
that logs do not fill with carriage returns."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """Progress on stderr driven by a ``progress(done, total, message)`` callback (see the module docstring)."""

    def __init__(self, enabled: bool, desc: str = "search", unit: str = "eval", stream=None,
                 every_s: float = 30.0) -> None:
        self.enabled = enabled
        self.desc = desc
        self.unit = unit
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.bar = None
        self.last_line = None

    def update(self, done: int, total: int | None, message: str = "") -> None:
        if not self.enabled:
            return
        if not self._terminal():
            self._line(done, total, message)
            return
        if self.bar is None:
            from tqdm.auto import tqdm  # a widget in a notebook (when ipywidgets is there), else the text bar

            self.bar = tqdm(total=total, unit=self.unit, desc=self.desc, file=self.stream, dynamic_ncols=True,
                            mininterval=0.5)
        self.bar.update(done - self.bar.n)
        if message:
            self.bar.set_postfix_str(message)

    def note(self, line: str) -> None:
        """A line of its own (above the bar when one shows), e.g. the search's time estimate before it starts."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _terminal(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty()) or (self.stream is sys.stderr and _in_notebook())

    def _line(self, done: int, total: int | None, message: str) -> None:
        now = time.monotonic()
        if self.last_line is not None and now - self.last_line < self.every_s and done != total:
            return
        self.last_line = now
        count = f"{done}/{total}" if total else str(done)
        self.stream.write(f"{self.desc}: {count} {self.unit}s{': ' + message if message else ''}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where stderr is no terminal but a tqdm widget shows."""
    shell = sys.modules.get("IPython")
    ipython = getattr(shell, "get_ipython", lambda: None)() if shell else None
    return type(ipython).__name__ == "ZMQInteractiveShell"
