"""Errors a user can cause. The CLI prints them as one line (``error: ...``) and exits with code 2."""


class HwnasError(Exception):
    """Base class of every user-facing hwnas error; its message is one line."""


def first_line(exc: BaseException) -> str:
    """The first line of another library's exception message (its type's name when the message is empty), for
    a one-line :class:`HwnasError` that wraps it."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


class DataError(HwnasError):
    """A dataset is unknown, missing from disk, or malformed."""


class ArchitectureError(HwnasError):
    """An architecture (JSON or in memory) is malformed or invalid."""


class TargetError(HwnasError):
    """A target description is unknown or malformed."""


class OptionError(HwnasError):
    """A command-line option has an invalid value."""


class ResumeError(HwnasError):
    """A run directory cannot be resumed (missing, unreadable or incompatible checkpoint)."""


class SearchError(HwnasError):
    """A search could not produce a result (for example every candidate was degenerate)."""


class LoweringError(HwnasError):
    """The network cannot be held by the chip's representation (names the connection or population)."""


class NirError(HwnasError):
    """A NIR file cannot be written, read or mapped onto hwnas' simulator."""


class NetxError(HwnasError):
    """The network has a layer netx cannot hold (the message names it)."""
