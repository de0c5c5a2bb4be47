# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install videoclf, classify the shipped sample (offline)
#   make test   create .venv, install videoclf with test extras, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: setup
	$(VENV)/bin/videoclf run configs/sample.yaml

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf out .pytest_cache
