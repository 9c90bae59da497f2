# Two entry points, both from a clean clone: `make run` serves the demo, `make test` runs the tests.
# Each creates .venv with Python >= 3.11 and installs what it needs; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Reinstall when the dependency list changes.
STAMP = $(VENV)/.installed-$(1)-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test serve redis-server clean

run: $(call STAMP,run)
	$(BIN)/xmodal demo

test: $(call STAMP,test) redis-server
	$(BIN)/python -m pytest

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run-%: $(VENV)/bin/python
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -e '.[serve,train]'
	touch $@

$(VENV)/.installed-test-%: $(VENV)/bin/python
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -e '.[serve,train,dev]'
	touch $@

# Tests that need Redis start their own redis-server; install Debian's package when missing.
redis-server:
	@command -v redis-server >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }

clean:
	rm -rf $(VENV) var
