# The README's two commands: `make demo` and `make test`. Both create .venv and install on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NAME ?= demo
FASHION := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz

.PHONY: install data demo search-demo study study-controls study-instability study-preserve-pilot study-preserve test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
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

# The mission's search at demo scale and its confirm: 12 Optuna trials (fashion-search-demo), then the Pareto
# set and IMP at 3 fresh seeds, and both reports. `python sweeps/imp_vs_guided.py --num-samples 64` is the full one.
search-demo: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion-search-demo --storage runs --name $(NAME)-search
	$(BIN)/python -m analysis.pareto --report-only --results runs/$(NAME)-search/results --out runs/$(NAME)-search/analysis
	$(BIN)/python sweeps/imp_vs_guided.py --confirm $(NAME)-search --seeds 3 --storage runs
	$(BIN)/python -m analysis.pareto --report-only --results runs/$(NAME)-search-confirm/results \
		--out runs/$(NAME)-search-confirm/analysis

# The reference study committed under docs/study/fashion-mnist: 6 methods x 5 seeds, 30 trials of 6 levels
# (a level about 70-90 s on one of 2 CPU cores; level 0 is shared by the methods of a seed: lthray.trial.cache).
study: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion --storage runs --name fashion
	$(BIN)/python -m analysis.pareto --report-only --results runs/fashion/results --out docs/study/fashion-mnist

# The LTH controls at the study's full length (6 methods x 5 seeds), and the instability analysis at the
# demo's scale (8,000 training images, 4 levels, 2 epochs a level; 10 minutes on 2 idle CPU cores, 2026-12-02).
SMALL := --set data.train_size=8000 --set prune.levels=4 --set concepts.bank_size=1000 --set data.probe_size=32
study-controls: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion-controls --storage runs --name controls
	$(BIN)/python -m analysis.pareto --report-only --results runs/controls/results --out docs/study/fashion-controls

study-instability: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion-instability --storage runs --name instability-demo \
		$(SMALL) --set train.epochs=2 --choice prune.rewind_step=0it,10it,25it,60it
	$(BIN)/python -m analysis.pareto --report-only --results runs/instability-demo/results \
		--out docs/study/fashion-instability-demo

# The preservation study (docs/study/fashion-preserve): first its pilot (B's lambda, C's distillation weight, on
# seeds 100-101), whose choice goes into lthray/presets.py (PRESERVE) and is committed; then the study.
study-preserve-pilot: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion-preserve-pilot --storage runs --name preserve-pilot
	$(BIN)/python -m analysis.pareto --report-only --results runs/preserve-pilot/results \
		--out docs/study/fashion-preserve/pilot

study-preserve: $(STAMP) data
	$(BIN)/python sweeps/imp_vs_guided.py --preset fashion-preserve --storage runs --name fashion-preserve
	$(BIN)/python -m analysis.pareto --report-only --results runs/fashion-preserve/results \
		--out docs/study/fashion-preserve

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint data
	HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q

bench: $(STAMP) data
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
