# The two commands: `make demo` (the whole system, locally) and `make test`.
# Each sets itself up first: virtualenvs, pip installs, tool checks.
PYTHON ?= python3
VENV_PY := .venv/bin/python

.PHONY: setup test demo up lint bench clean

setup:
	@$(PYTHON) -m infra.bootstrap

# `make test` is the whole suite as two pytest runs side by side (DESIGN.md "Test
# budget"): most tests wait on emulators and small wall-clock intervals rather than
# compute, so on 2 cores the pair takes about as long as the longer run. WAITING_TESTS
# (the whole local stack, the benchmarks reusing it, Pub/Sub delivery, the accounts'
# liveness stacks) take about half the suite's time; their output follows the other
# run's. Either run collecting no test
# (pytest's exit 5) fails the suite: calsync always has tests.
# `make test ARGS="..."` is one run of what ARGS names (a selection matching nothing: 0).
WAITING_TESTS := tests/e2e tests/bench tests/integration/outbox \
	tests/integration/liveness/test_account_liveness.py \
	tests/integration/liveness/test_account_deletion.py

test: setup
ifeq ($(strip $(ARGS)),)
	@mkdir -p .run; log=.run/test-waiting.log; \
	echo "[test] pytest $(WAITING_TESTS) (output below, when it ends), beside it:"; \
	$(VENV_PY) -m pytest $(WAITING_TESTS) >$$log 2>&1 & waiting=$$!; \
	echo "[test] pytest tests $(addprefix --ignore=,$(WAITING_TESTS))"; \
	$(VENV_PY) -m pytest tests $(addprefix --ignore=,$(WAITING_TESTS)); rest=$$?; \
	wait $$waiting; waited=$$?; \
	echo "[test] pytest $(WAITING_TESTS):"; cat $$log; \
	for code in $$rest $$waited; do if [ $$code -eq 5 ]; then \
		echo "[test] a run collected no tests: failing, since calsync always has tests" >&2; \
		exit 1; fi; done; \
	echo "[test] exit codes: $$rest (tests), $$waited ($(WAITING_TESTS))"; \
	[ $$rest -eq 0 ] && [ $$waited -eq 0 ]
else
	@$(VENV_PY) -m infra.run_tests $(ARGS)
endif

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
