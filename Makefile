# Every target sets the host up first (idempotent), so each one works on a fresh machine.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit bench clean

setup:
	bash scripts/setup-host

demo: setup
	$(VENV)/bin/xdpsensor demo

test: setup
	$(PY) -m pytest -q

test-unit: setup
	$(PY) -m pytest -q -m "not kernel and not lab"

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
