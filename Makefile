# Two commands do all the set-up on a fresh machine (Python 3.11+):
#   make run    # creates .venv, installs, runs the quick profile of the headline task
#   make test   # creates .venv, installs, runs the test suite
# TASK=tasks/cms.yaml make run  runs another task.
PY ?= python3
VENV := .venv
TASK ?= tasks/lego.yaml

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# the CPU wheel of torch first: a bare "torch" requirement would pull a multi-GB CUDA build
	$(VENV)/bin/python -c "import torch" 2>/dev/null || $(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/python -m pipeline.run $(TASK)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

.PHONY: install run test
