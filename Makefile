# Quick start: `make demo` runs a search on the embedded digits data, `make test` runs the test suite.
# Both create .venv with Python 3.10 (required by lava-nc 0.10 / lava-dl 0.6) and install hwnas into it first.

VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python

.PHONY: demo test test-fast bench install clean-venv

demo: $(STAMP)
	$(VENV)/bin/hwnas run --target loihi2 --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)  # the edit-test loop: everything but the tests marked slow
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) bench/search_speed.py

install: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  py=$$(sh tools/find-python310.sh); \
	  echo "creating $(VENV) with $$py"; \
	  $$py -m venv $(VENV); \
	fi; \
	$(PY) -m pip install --quiet --upgrade pip; \
	echo "installing hwnas and its dependencies into $(VENV) (a first install downloads about 6 GB and takes minutes)"; \
	$(PY) -m pip install --quiet --progress-bar off -e ".[lava,test,ray,xylo]"; \
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
