"""Lava processes written by hwnas (kept in their own folder: Lava imports every module beside a process when it looks for its models)."""
