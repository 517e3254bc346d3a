# Two set-up commands for a fresh machine (see README.md):
#   make demo   - create .venv, install dicelab, run paper 1's pipeline (smoke scale, about 2 min
#                 on 2 cores) on generated MNIST-1D: search, evaluate, ablate, analyze, HTML report
#   make test   - create .venv, install dicelab with its test tools, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dicelab-installed

.PHONY: demo test lint docs bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, from the pinned CPU build, so nothing else can pull a CUDA build.
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dicelab reproduce paper1 --scale smoke --out runs/demo

test: $(STAMP)
	$(BIN)/pytest -n 2 --doctest-modules src/dicelab tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy src

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_trainer.py

clean:
	rm -rf $(VENV) runs site
