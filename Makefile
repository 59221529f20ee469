# The two commands a new user needs (see README.md):  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# Model hubs are never needed by the demo or the tests; without these a hub lookup can hang.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: install demo test clean-results

$(BIN)/.kdprivacy-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first, pinned: the CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[workflow,test]'
	touch $@

install: $(BIN)/.kdprivacy-installed

demo: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores $(CORES) --report results/report.html
	@echo "Done: tables in results/tables/, figures in results/figures/, report results/report.html"

test: install
	$(BIN)/python -m pytest -q

clean-results:
	rm -rf results .snakemake
