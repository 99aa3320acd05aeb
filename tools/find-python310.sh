#!/bin/sh
# Prints the path of a working Python 3.10 interpreter (lava-nc 0.10 requires >=3.10,<3.11), or fails with a hint.
for candidate in "${PYTHON310:-}" python3.10 "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10 \
                 /root/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do
  [ -n "$candidate" ] || continue
  if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
    command -v "$candidate" 2>/dev/null || echo "$candidate"
    exit 0
  fi
done
echo "error: Python 3.10 not found (lava-nc 0.10 needs >=3.10,<3.11); install it (e.g. pyenv install 3.10) or set PYTHON310=/path/to/python3.10" >&2
exit 1
