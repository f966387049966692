# The README's two commands: `make demo` and `make test`. Both create .venv and install on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NAME ?= demo
SAMPLES ?= 8

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python sweeps/imp_vs_guided.py --preset digits --num-samples $(SAMPLES) --storage runs --name $(NAME)
	$(BIN)/python -m analysis.pareto --results runs/$(NAME)/results --out runs/$(NAME)/analysis

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
