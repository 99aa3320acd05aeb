"""Hardware targets: descriptions loaded from TOML files (``targets/*.toml`` or the user's own)."""

from .targets import Target, builtin_targets, load_target

__all__ = ["Target", "builtin_targets", "load_target"]
