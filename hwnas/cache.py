"""A persisted cache of results keyed by text: what makes long work (a search, a proxy check) resumable.

The file holds the configuration that produced the results and the results themselves; it is rewritten
atomically (a reader never sees half a file), at most every ``every_s`` seconds while work goes on and at once
on :meth:`ResultCache.save`. Loading checks the file's format and lets the caller check its configuration.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from .errors import ResumeError
from .io_utils import write_json_atomic


class ResultCache:
    """Results by key plus the configuration that produced them, in one JSON file."""

    def __init__(self, path: Path, config: dict, results: dict | None = None, fmt: str | None = None,
                 results_key: str = "results", extra: Callable[[], dict] | None = None, every_s: float = 5.0) -> None:
        self.path = Path(path)
        self.config = config
        self.results: dict = results if results is not None else {}
        self.fmt = fmt
        self.results_key = results_key
        self.extra = extra or (lambda: {})
        self.fields: dict = {}  # further top-level entries kept in the file (e.g. a search's time estimate)
        self.every_s = every_s
        self.dirty = False
        self.last_save = time.monotonic()

    @staticmethod
    def read(path: Path, fmt: str | None = None, results_key: str = "results",
             well_formed: Callable[[str, object], bool] | None = None,
             what: str = "an hwnas results file") -> tuple[dict, dict, dict]:
        """(configuration as stored, results, the file's other top-level entries) at ``path``; a missing,
        unreadable or foreign file (not ``what``) or malformed results are a one-line :class:`ResumeError`."""
        path = Path(path)
        if not path.is_file():
            raise ResumeError(f"cannot resume: {path} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ResumeError(f"cannot read {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ResumeError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(data, dict) or (fmt is not None and data.get("format") != fmt):
            raise ResumeError(f"{path} is not {what}")
        results = data.get(results_key)
        if not isinstance(results, dict) or (well_formed and not all(well_formed(k, v) for k, v in results.items())):
            raise ResumeError(f"{path}: '{results_key}' is malformed")
        others = {key: value for key, value in data.items() if key not in ("format", "config", results_key)}
        return data.get("config"), results, others

    def put(self, key: str, value) -> None:
        """Store one result; the file is rewritten if the last save is older than ``every_s``."""
        self.results[key] = value
        self.dirty = True
        self.maybe_save()

    def maybe_save(self) -> None:
        """Save when there is something new and the last save is older than ``every_s``."""
        if self.dirty and time.monotonic() - self.last_save >= self.every_s:
            self.save()

    def save(self, **fields) -> None:
        """Write the file now; ``fields`` are added at its top level (e.g. ``complete=True``)."""
        head = {"format": self.fmt} if self.fmt else {}
        write_json_atomic(self.path, {**head, **self.extra(), **self.fields, **fields, "config": self.config,
                                      self.results_key: self.results})
        self.dirty = False
        self.last_save = time.monotonic()
