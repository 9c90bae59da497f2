# Two entry points, both from a clean clone: `make run` serves the demo, `make test` runs the tests.
# Each creates .venv with Python >= 3.11 and installs what it needs; nothing is installed by hand.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# OpenCLIP folders are read through open_clip itself, installed without its dependencies: PyPI's
# torchvision for it is a CUDA build that fails to load against the CPU torch (pyproject.toml).
OPEN_CLIP := open_clip_torch==3.3.0
# Reinstall when the dependency list changes.
STAMP = $(VENV)/.installed-$(1)-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test test-train-image fuzz quality bench-serve bench-engine system-packages fonts apt-install clean

# The default model (`xmodal train --preset default`) over the Twemoji gallery; the first run
# trains it on cached features of pretrained towers (minutes on 2 cores), later runs load what
# var/demo holds.
run: $(call STAMP,run) fonts
	$(BIN)/xmodal demo

# Regenerate bench/results/quality.md for the default model (prepares it first if missing; the
# held-out-concepts model it also needs trains from the demo's feature cache).
quality: $(call STAMP,test) system-packages
	$(BIN)/xmodal demo --no-serve
	$(BIN)/xmodal bench quality --engine var/demo/engine --out bench/results/quality.md

# Regenerate bench/results/serve*.md: the default model, then an engine with a production-size
# text tower (bench/minilm.py, the pretrained MiniLM) over the same gallery; ~6 min on 2 cores.
SERVE_BENCH := --requests 1500 --seconds 6
bench-serve: $(call STAMP,test)
	$(BIN)/xmodal demo --no-serve
	$(BIN)/xmodal bench serve $(SERVE_BENCH) --out bench/results/serve.md --json bench/results/serve.json
	$(BIN)/python -m bench.minilm var/minilm
	$(BIN)/xmodal bench serve $(SERVE_BENCH) --engine var/minilm/engine --index var/minilm/index \
	  --out bench/results/serve-minilm.md --json bench/results/serve-minilm.json

# Regenerate bench/results/engine.md: the default towers (trained demo checkpoint) and a
# random-weight ViT-B/32 CLIPModel through `bench engine`, the default engine's int8 build
# through `bench build --precision int8`, then the report; ~25 min on 2 busy cores.
ENGINE_BENCH := --batch 1 32 --rounds 3 --calibration var/demo/gallery
bench-engine: $(call STAMP,test)
	$(BIN)/xmodal demo --no-serve
	rm -rf var/bench/engine-default && mkdir -p var/bench
	$(BIN)/xmodal bench engine --checkpoint var/demo/checkpoint $(ENGINE_BENCH) \
	  --keep var/bench/engine-default --json bench/results/engine-default.json
	$(BIN)/xmodal bench engine --model hf-clip-b32 $(ENGINE_BENCH) --json bench/results/engine-vit-b32.json
	$(BIN)/xmodal bench build --engine var/bench/engine-default --count 256 --precision int8 \
	  --json bench/results/engine-build.json
	$(BIN)/xmodal bench engine-report --runs bench/results/engine-default.json \
	  bench/results/engine-vit-b32.json --build bench/results/engine-build.json

test: $(call STAMP,test) system-packages
	$(BIN)/python -m pytest

# The train image built and run in a chroot (~13 min; left out of `make test` for its time).
test-train-image: $(call STAMP,test) system-packages
	$(BIN)/python -m pytest -m container_train tests/deploy

# A longer API fuzzing run than the test suite's (examples per operation).
fuzz: $(call STAMP,test)
	$(BIN)/xmodal bench fuzz --examples 500

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run-%: $(VENV)/bin/python
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -e '.[serve,train]'
	$(PIP) install --quiet --no-deps '$(OPEN_CLIP)'
	touch $@

$(VENV)/.installed-test-%: $(VENV)/bin/python
	$(PIP) install --quiet --upgrade "pip>=24"
	$(PIP) install --quiet -e '.[serve,train,dev]'
	# only its ClipClient is used, in tests; its own dependencies would pull a CUDA torch
	$(PIP) install --quiet --no-deps 'clip-retrieval==2.45.0'
	$(PIP) install --quiet --no-deps '$(OPEN_CLIP)'
	touch $@

# Debian packages, installed when missing, in one apt run. Training the default model draws
# Symbola's monochrome emoji (fonts-symbola); the tests also use redis-server (they start their
# own), chromium (the search page, driven by Playwright), the Noto colour emoji font (the
# cross-style emoji set is rendered from it), and podman, debootstrap and iproute2 (the images
# are built on a base made offline and booted: tests/deploy/podman.py).
NOTO_EMOJI := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
SYMBOLA := /usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf
fonts:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$$(test -f $(SYMBOLA) || echo fonts-symbola)"

system-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	test -f $(NOTO_EMOJI) || missing="$$missing fonts-noto-color-emoji"; \
	test -f $(SYMBOLA) || missing="$$missing fonts-symbola"; \
	command -v podman >/dev/null || missing="$$missing podman"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	$(MAKE) --no-print-directory apt-install PACKAGES="$$missing"

apt-install:
	@missing="$(strip $(PACKAGES))"; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) var

# The GPU check (bench/gpu_check.sh): on a GPU machine, one run with a time bound per
# step; the report is $(OUT)/gpu.md (commit it as bench/results/gpu.md).
.PHONY: gpu-check
OUT ?= var/gpu-check
gpu-check:
	OUT=$(OUT) bench/gpu_check.sh
