# The two commands of the README. Each sets itself up on a fresh clone: it creates .venv and
# installs the pinned set from pyproject.toml (re-installs only when pyproject.toml changes).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
WORKSPACE ?= workspace
PYTEST_ARGS ?=

.PHONY: demo test lint clean redis-server chromium explore

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job on demo data, in ./workspace
	$(VENV)/bin/rgcd --workspace $(WORKSPACE) run

explore: $(STAMP)  ## the explorer page on ./workspace (after make demo); Ctrl-C stops it
	$(VENV)/bin/rgcd --workspace $(WORKSPACE) explore

test: $(STAMP) redis-server chromium  ## lint + the whole test suite (what CI runs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n auto --dist worksteal $(PYTEST_ARGS)

# The Redis online-store tests run a real redis-server (Debian's package) on 127.0.0.1.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(WORKSPACE) .pytest_cache

# The explorer's browser test drives Debian's chromium (/usr/bin/chromium) through Playwright for
# Python; nothing downloads a browser (never `playwright install`).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
