# Fresh machine: `make serve` starts the app, `make test` runs the tests.
# Both first build .venv (Python 3.10+ with venv) unless it is up to date.

VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: serve test install

serve: install
	apps/local/start.sh

test: install
	$(VENV)/bin/python -m pytest -q --durations=25 tests

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements.txt
	$(VENV)/bin/pip install --no-deps -e .
	touch $@
