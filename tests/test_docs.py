"""The documentation stays true to the code: the command reference is the command line's own help, and the
README stays a short page."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_reference_is_the_current_help():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "command_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_readme_is_short_and_links_the_guides():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    for page in ("docs/guide.md", "docs/commands.md", "docs/ARCHITECTURE.md", "docs/measurements.md", "CHANGELOG.md"):
        assert page in readme and (ROOT / page).is_file(), page
    assert "make test" in readme and "make demo" in readme  # the quick start CI and newcomers run
