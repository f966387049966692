# The README's two commands: `make demo` and `make test`. Both create .venv and install on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NAME ?= demo
FASHION := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

.PHONY: install data demo study test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist when neither it nor $LTHRAY_DATA/fashion-mnist has it
# (as root, or through sudo); otherwise lthray says where to put the files, or downloads them when online.
data:
	@if [ -f "$(FASHION)" ] || [ -f "$${LTHRAY_DATA:-/nonexistent}/fashion-mnist/t10k-labels-idx1-ubyte.gz" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: Fashion-MNIST not found; lthray will download it if online (see README: Data)"; fi

demo: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion-demo --storage runs --name $(NAME)
	$(BIN)/python -m analysis.pareto --results runs/$(NAME)/results --out runs/$(NAME)/analysis

# The reference study committed under docs/study/fashion-mnist (about 50 minutes on 2 CPU cores).
study: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion --storage runs --name fashion
	$(BIN)/python -m analysis.report --results runs/fashion/results --out docs/study/fashion-mnist

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint data
	HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q

bench: $(STAMP) data
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
