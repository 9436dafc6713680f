# Every target sets the host up first (idempotent), so each one works on a fresh machine.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit bench vm-test vagrant-box bundle clean

setup:
	bash scripts/setup-host

demo: setup
	$(VENV)/bin/xdpsensor demo

test: setup
	$(PY) -m pytest -q

test-unit: setup
	$(PY) -m pytest -q -m "not kernel and not lab"

# ProtoPoke (not on PyPI) is the baseline of the API decode bench: a checkout beside this one, if any.
PROTOPOKE_SRC ?= $(abspath ../ProtoPoke)
bench: setup
	PROTOPOKE_SRC=$(PROTOPOKE_SRC) $(PY) -m bench

# Not part of `test`: boots Debian's stock kernel in QEMU (one to two hours without KVM).
vm-test:
	bash scripts/setup-host --vm
	bash scripts/vm-test

# A libvirt Vagrant box of Debian 12 from Debian's packages, for vagrant/ (root; a few minutes).
vagrant-box:
	bash scripts/setup-host --vagrant
	bash scripts/make-vagrant-box

# Wheels and .debs for `scripts/setup-host --offline bundle` on hosts with no network.
bundle:
	bash scripts/make-bundle bundle

clean:
	rm -rf $(VENV) build bundle *.egg-info
