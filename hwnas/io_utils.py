"""Atomic file output: a reader never sees a half-written file, even after Ctrl-C."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from the user's group and tools
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: str | Path, option: str, folder: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """Check, before any work, that ``path`` (a file, or a folder when ``folder``) can be written: it is not a
    folder (a file) or a file (a folder), no file stands where a parent folder must go, and the deepest existing
    folder on its way accepts a new file (tried for real, so root's and read-only file systems' answers are right).
    One-line :class:`OptionError` naming ``option`` otherwise. Creates nothing that stays."""
    from .errors import OptionError

    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise OptionError(f"{option} {path}: the file name must end in {' or '.join(suffixes)}")
    if path.exists() and path.is_dir() != folder:
        raise OptionError(f"{option} {path} is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}")
    existing = path if folder and path.is_dir() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OptionError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".hwnas-probe-"):
            pass
    except OSError as exc:
        raise OptionError(f"{option} {path}: cannot write in {existing} ({exc.strerror or exc})") from None
    return path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (non-finite floats are written as null)."""
    write_text_atomic(path, json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n")


def write_csv_atomic(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows (dicts) as CSV with the given column order, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_text_atomic(path, buffer.getvalue())


def _finite(obj: Any) -> Any:
    """Replace NaN/inf floats (not valid JSON) by None, recursively."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj
