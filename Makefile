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

# The venv takes about 8.5 GB (torch is the CUDA build): say so before pip fails half-way.
NEED_GB := 10

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	  test $$free_gb -ge $(NEED_GB) || { echo "make: the venv needs $(NEED_GB) GB free here, only $$free_gb GB left (df -h .)"; exit 1; }
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -r requirements.txt
	$(VENV)/bin/pip install --no-deps -e .
	touch $@
