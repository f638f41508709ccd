# sensorops: `make run` does everything on a fresh machine; `make test` runs the whole suite, services included.
# Everything else is a step of those two. `make help` lists the targets.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SENSOROPS := $(BIN)/sensorops
STAMP := $(VENV)/.installed
# Commands the platform needs and the Debian packages that bring them: Java and Maven run the platform,
# Chromium opens the rendered book in its test.
APT_FOR := java:openjdk-17-jre-headless javac:openjdk-17-jdk-headless mvn:maven chromium:chromium
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider --durations=15
# The book's tooling lives in tools/ (not installed, not in the cluster image); it runs with tools/ on the path.
BOOK := PYTHONPATH=$(CURDIR)/tools $(BIN)/python -m sensorops_book
# Extras: platform (the local services, Airflow included), book (papermill, jupyter-book, JupyterLab), test.
EXTRAS := all

.PHONY: help run test lint install up status down clean notebooks book lab bench lock unit integration drill

include deploy/k8s/k8s.mk

help:  ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: up notebooks book  ## start the platform, execute every notebook, build the book
	@echo; echo "The book:      file://$(CURDIR)/_build/book/_build/html/index.html"
	@echo "Executed notebooks: $(CURDIR)/_build/notebooks/"
	@$(SENSOROPS) platform status || true
	@echo "Credentials are in $(CURDIR)/.env. Stop everything with: make down"

test: lint  ## the whole suite: lint, unit, integration (live services), notebooks, book, platform lifecycle
	@# The unit tests need no service: they run while the platform starts (its output follows theirs).
	@mkdir -p _build; $(SENSOROPS) platform up > _build/platform-up.log 2>&1 & up=$$!; \
	  $(PYTEST) tests/unit; unit=$$?; wait $$up; started=$$?; cat _build/platform-up.log; \
	  [ $$unit = 0 ] && [ $$started = 0 ]
	$(PYTEST) tests/integration -m "not lifecycle"
	$(PYTEST) tests/notebooks -m notebooks
	$(PYTEST) tests/integration -m lifecycle

lint: $(STAMP)  ## ruff: lint and format check (fix with: .venv/bin/ruff format . && .venv/bin/ruff check --fix .)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP)  ## unit tests only (no services)
	$(PYTEST) tests/unit

integration: up  ## integration tests against the live platform
	$(PYTEST) tests/integration -m "not lifecycle"

drill: up  ## fault drills and the load test on the live platform (about 45 min); prints the ledger table
	$(PYTEST) -s tests/drills -m drill

install: $(STAMP)  ## install system packages, the virtualenv and the pinned Python packages

$(STAMP): pyproject.toml requirements.lock
	@missing=""; for pair in $(APT_FOR); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "Missing system packages:$$missing. Install them with: sudo apt-get install$$missing"; exit 1; fi; \
	fi
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11 or 3.12)."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[$(EXTRAS)]'
	@touch $@

up: $(STAMP)  ## start the platform (installs what is missing) and wait until every service is healthy
	$(SENSOROPS) platform up

status:  ## per service: up or down, URL, PIDs
	@$(SENSOROPS) platform status

down:  ## stop every service; the data is kept
	@$(SENSOROPS) platform down

clean:  ## stop everything and delete the platform's data and the build output
	@if [ -x $(SENSOROPS) ]; then $(SENSOROPS) platform clean; fi
	rm -rf _build

notebooks: up  ## execute every notebook in order into _build/notebooks/
	$(BOOK) notebooks

book: $(STAMP)  ## build the HTML book from the executed notebooks (warnings are errors)
	$(BOOK) build

lab: up  ## JupyterLab on the notebooks, with the platform's settings in the environment
	$(BOOK) lab

bench: up  ## benchmarks: print events/s and latencies
	$(SENSOROPS) bench generate
	$(SENSOROPS) bench stream
	$(SENSOROPS) bench score

lock:  ## re-pin every Python package after changing pyproject.toml
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	{ head -2 requirements.lock; $(BIN)/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
