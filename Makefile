# Quick start:  make run   (set up if needed, run the pipeline, print how to serve)
#               make test  (set up if needed, run the whole test suite)
.DEFAULT_GOAL := help
.PHONY: help setup run test test-fast serve pipeline deploy dvc-files clean

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
RAW    := data/raw/digits.csv
PORT   ?= 3000

# dvc.yaml runs `maas ...`, so the venv's scripts must come first on PATH.
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := true

help:
	@echo "make run        set up if needed, then run the whole pipeline with dvc repro"
	@echo "make test       set up if needed, then run the full test suite"
	@echo "make test-fast  the unit tests only (no dvc repro, Prefect server or bentoml serve)"
	@echo "make serve      serve the packaged Bento on http://localhost:$(PORT) (make serve PORT=3300)"
	@echo "make pipeline   run the pipeline as a Prefect flow instead of dvc repro"
	@echo "make deploy     register the Prefect deployments (prefect.yaml) on the server in PREFECT_API_URL"
	@echo "make dvc-files  regenerate params.yaml, dvc.yaml and prefect.yaml from conf/ and the stage registry"
	@echo "make setup      only create .venv and install the pinned versions"
	@echo "make clean      delete the pipeline's outputs (DVC's cache keeps them)"

# Reinstalls when the dependency list or the pins change. constraints.txt pins
# every package (torch==2.13.0: the CPU build on this machine's disk, CUDA from PyPI elsewhere).
# uv installs the same pins in parallel (about half pip's time here, bytecode compiled as pip does);
# it doesn't read pip's configuration, so it is handed pip's wheel folder and indexes. If uv can't
# be had or fails, pip does the install.
PIP_CONF = $(shell $(PYTHON) -m pip config get global.$(1) 2>/dev/null)
UV_SOURCES = $(foreach d,$(or $(PIP_FIND_LINKS),$(call PIP_CONF,find-links)),--find-links $(d)) \
             $(foreach u,$(or $(PIP_EXTRA_INDEX_URL),$(call PIP_CONF,extra-index-url)),--extra-index-url $(u)) \
             $(if $(PIP_INDEX_URL),--index-url $(PIP_INDEX_URL))
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv==0.13.9' \
	  && $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python --index-strategy unsafe-best-match \
	       $(UV_SOURCES) -c constraints.txt -e '.[dev]' \
	  || $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip check
	@touch $@

setup: $(STAMP)

# Raw data: from the DVC remote when it has it, otherwise exported from scikit-learn
# (the export is byte-identical to what data.dvc records). A pulled copy is re-hashed:
# DVC copies a cached object without checking it, so a tampered one would go unnoticed.
$(RAW): | $(STAMP)
	@if dvc pull --quiet data.dvc 2>/dev/null; then maas verify data.dvc; else maas data export; fi

run: $(STAMP) $(RAW)
	maas compose
	@start=$$(date +%s); dvc repro; echo "dvc repro took $$(( $$(date +%s) - start )) s"
	@dvc metrics show
	@echo
	@echo "Bento: $$(python -c 'import json; print(json.load(open("models/bento/bento.json"))["bento_tag"])')"
	@echo "Serve the model:  make serve   (or: bentoml serve <the Bento above>)"
	@echo "Then:  curl -s -X POST localhost:3000/predict -H 'content-type: application/json' \\"
	@echo "         -d '{\"images\": [[[0,0,5,13,9,1,0,0],[0,0,13,15,10,15,5,0],[0,3,15,2,0,11,8,0],[0,4,12,0,0,8,8,0],[0,5,8,0,0,9,8,0],[0,4,11,0,1,12,7,0],[0,2,14,5,10,12,0,0],[0,0,6,13,10,0,0,0]]]}'"

test: $(STAMP)
	pytest

test-fast: $(STAMP)
	pytest -m "not slow"

serve: $(STAMP)
	maas serve --port $(PORT)

pipeline: $(STAMP) $(RAW)
	maas compose
	maas pipeline

# Scheduled runs: the process work pool (created if missing), then maas-nightly, maas-monitor and
# maas-sweep, with the schedules conf/orchestration/ declares, and the automation that notifies when a
# maas-monitor run fails (MAAS_ALERT_WEBHOOK_URL). Needs a server: `prefect server start`.
deploy: $(STAMP)
	maas deploy

# Regenerate the files derived from conf/ and the stage registry (tests fail when they drift).
dvc-files: $(STAMP)
	maas compose
	maas dvc-yaml
	maas prefect-yaml

clean:
	rm -rf data/validated data/processed models reports sweeps outputs multirun
