# `make run` runs the whole study; `make test` runs the test suite. Both create the
# environment in .venv on first use (pinned versions from requirements.lock).

PYTHON ?= python3
PROFILE ?= default
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run quick status test test-fast lint benchmark lab clean-outputs

$(INSTALLED): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/python run_all.py run --profile $(PROFILE)

quick: $(INSTALLED)
	$(BIN)/python run_all.py run --profile quick

status: $(INSTALLED)
	$(BIN)/python run_all.py status --profile $(PROFILE)

# Every test, including the ones that read the nflverse files and run the quick profile
# through papermill. Exit code 5 (no tests collected) counts as a failure.
test: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Unit tests only: no notebooks, no sampling longer than a few seconds.
test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check lib tests run_all.py benchmarks
	$(BIN)/nbstripout --verify --keep-id notebooks/*.ipynb

benchmark: $(INSTALLED)
	$(BIN)/python benchmarks/sampling.py --phase phase2_1 --profile $(PROFILE)

lab: $(INSTALLED)
	$(BIN)/jupyter lab $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) notebooks/

clean-outputs:
	rm -rf outputs/quick outputs/default
