# Two entry points (see README): `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DEMO_ARGS ?= --duration 20
PYTEST_ARGS ?=
# Root installs system packages directly; anyone else through sudo, where there is one.
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)

.PHONY: demo test lint typecheck unit integration e2e system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/inferlane demo $(DEMO_ARGS)

# Services the tests start themselves (tests/conftest.py): redis-server, Debian's package.
# The eBPF fast path's toolchain (l4/ebpf/build.py compiles lb.bpf.c with clang and libbpf's
# headers at first use; bpftool to inspect its pinned maps) and its tests' ethtool.
EBPF_DEPS := clang llvm libbpf-dev bpftool ethtool
EBPF_DEPS_PRESENT := export PATH="$$PATH:/usr/sbin:/sbin"; command -v clang && command -v llc \
	&& command -v bpftool && command -v ethtool && test -f /usr/include/bpf/bpf_helpers.h
system-deps:
	command -v redis-server >/dev/null || ($(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server)
	($(EBPF_DEPS_PRESENT)) >/dev/null || ($(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(EBPF_DEPS))

test: lint typecheck system-deps $(STAMP)
	$(BIN)/pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: system-deps $(STAMP)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: system-deps $(STAMP)
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
