# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first
# (Debian packages when missing, .venv, the package) and are safe to run again.

VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint unit integration bench clean

setup:
	@./scripts/setup.sh

demo: setup
	$(BIN)/failback demo

# Two workers (this is a 2-core machine); a test file runs whole in one worker so that
# its module-scoped lab is built once. Each lab picks its own free ports. The slowest
# tests are listed at the end, to see where the suite's time goes. Three workers took
# the suite from 18.9 to about 15 min, but saturated the CPU (86% busy) and the netns
# control-plane tests, which time leases and renewals, failed in one run of four.
test: setup lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=20

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports --no-cache

unit: setup
	$(BIN)/python -m pytest -q -m "not integration"

integration: setup
	$(BIN)/python -m pytest -q -m integration

bench: setup
	$(BIN)/python bench/failback_downtime.py
	$(BIN)/python bench/failback_stall.py
	$(BIN)/python bench/failover_rto.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
