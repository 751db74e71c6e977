# eddy: two commands from a fresh clone.
#   make demo   train the default model, serve it, stream the bundled series through it
#   make test   the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.eddy-installed

.PHONY: demo test proto bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m eddy.cli.demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# Regenerate runtime/grpc/proto/ from protos/ (a test fails when they are stale).
proto: $(STAMP)
	$(PY) protos/generate.py

# Serving benchmark: eddy serve vs a bare gRPC echo ceiling, batching on/off (~4 min; not part of `make test`).
bench: $(STAMP)
	$(PY) bench/bench_serving.py

clean:
	rm -rf .demo build dist *.egg-info
