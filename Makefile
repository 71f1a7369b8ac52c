# Two commands do all the set-up on a fresh machine (see README):
#   make workbook   create .venv, install, and run every notebook (ARGS="--smoke" for a quick run)
#   make test       create .venv, install, and run the test suite (make test-quick: the unit and repo tiers)
#   make format     ruff: format helpers/, tests/ and benchmarks/, and lint them and the notebooks
#   make book RUN=runs/DIR   render a finished run's executed notebooks as an HTML book (RUN/book/index.html)
# On a CUDA machine, `make ... CONSTRAINTS=` keeps pip from pinning the CPU build of torch.
VENV ?= .venv
CONSTRAINTS ?= -c constraints-cpu.txt
ARGS ?=
RUN ?= runs/default

.PHONY: install workbook test test-quick format book

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt requirements-nodeps.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install $(CONSTRAINTS) -e ".[dev]"
	$(VENV)/bin/python -m pip install --no-deps -r requirements-nodeps.txt
	touch $@

workbook: install
	$(VENV)/bin/workbook run $(ARGS)

test: install
	$(VENV)/bin/pytest

test-quick: install
	$(VENV)/bin/pytest tests/unit tests/repo

format: install
	$(VENV)/bin/ruff format helpers tests benchmarks
	$(VENV)/bin/ruff check helpers tests benchmarks notebooks

book: install
	$(VENV)/bin/workbook book $(RUN)
