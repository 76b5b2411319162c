# Two entry points: `make demo` runs the main job on real data, `make test` runs the suite.
# Each creates .venv and installs what it needs on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test install-demo install-test chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install-demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[atm,dashboard,notebook]"

# The CPU build of torch lets the tensor and GPU-probe tests run; on machines
# without that wheel nearby they are skipped with the reason shown.
install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || echo "torch 2.13.0 is not available here; the torch tests will be skipped."

# Browser tests drive Debian's Chromium; Playwright's own browser download is not used.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
			apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "Chromium is missing: install Debian's chromium package (apt-get install chromium) to run the browser tests."; \
		fi; \
	fi

demo: install-demo
	$(BIN)/psnc demo $(DEMO_ARGS)

test: install-test chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) psnc-demo .pytest_cache
