# The two commands: `make demo` (the whole system, locally) and `make test`.
# Each sets itself up first: virtualenvs, pip installs, tool checks.
PYTHON ?= python3
VENV_PY := .venv/bin/python

.PHONY: setup test demo up lint bench clean

setup:
	@$(PYTHON) -m infra.bootstrap

test: setup
	@$(VENV_PY) -m infra.run_tests $(ARGS)

demo: setup
	@$(VENV_PY) -m infra.demo

up: setup
	@$(VENV_PY) -m infra.local up

lint: setup
	@$(VENV_PY) -m ruff check .
	@$(VENV_PY) -m mypy functions infra main.py

# Every benchmark at full size (the `_` files are helpers); `make bench BENCH_ARGS=--smoke`
# runs them all at smoke size, as `make test` does (tests/bench).
bench: setup
	@for b in $$(ls bench/*.py | grep -v "/_"); do echo "== $$b"; $(VENV_PY) $$b $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf .run .pytest_cache
