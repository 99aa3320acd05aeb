"""Helpers shared by the command modules: argument types, one-line errors, and options onto config dataclasses."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from ..errors import OptionError
from ..limits import DEVICES, MAX_SEED, check_device, check_fraction

EXIT_USER_ERROR = 2


def config_options(config_class, args: argparse.Namespace) -> dict:
    """The parsed options that are fields of ``config_class``, as keyword arguments of the Python API."""
    return {field.name: getattr(args, field.name) for field in fields(config_class) if hasattr(args, field.name)}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: ...``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog.split()[-1]}: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USER_ERROR)


def _integer_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be a {what} integer, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer_at_least(text, 1, "positive")


def stem_pool_option(text: str) -> int | str:
    """argparse type of ``--stem-pool``: an integer >= 1, or ``auto``."""
    from ..nas.config import STEM_POOL_AUTO

    if text.strip().lower() == STEM_POOL_AUTO:
        return STEM_POOL_AUTO
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or '{STEM_POOL_AUTO}', got '{text}'") from None


def positive_int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers >= 1, e.g. ``8,16,32``."""
    return tuple(positive_int(part.strip()) for part in text.split(","))


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer_at_least(text, 0, "non-negative")


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in 0..2^32-1."""
    value = _integer_at_least(text, 0, "non-negative")
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEED} (2^32 - 1), got {value}")
    return value


def device_name(text: str) -> str:
    """argparse type: a ``--device``: auto, cpu, cuda or cuda:N."""
    try:
        return check_device(text)
    except OptionError:
        raise argparse.ArgumentTypeError(f"must be {DEVICES}, got {text!r}") from None


DEVICE_HELP = ("where torch computes: auto (the first CUDA GPU when torch sees one, else the CPU), cpu, cuda or "
               "cuda:N; results depend on it like on --threads, so the run records it")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be positive, got 0")
    return value


def fraction_of_one(text: str) -> float:
    """argparse type: a share in (0, 1]."""
    try:
        return check_fraction(float(text), "it")
    except (ValueError, OptionError):
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text}") from None
