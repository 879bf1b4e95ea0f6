# Everything a fresh machine needs, from the project's own files.
# `make demo` runs the hub with a simulated fleet; `make test` runs every check CI runs.

VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  ?= python3
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

VENDOR  := hub/web/static/vendor
VENDORED := $(VENDOR)/.vendored-$(shell cat package.json package-lock.json | sha1sum | cut -c1-12)

.PHONY: demo test lint typecheck pytest system-deps vendor bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@# grafana-client needs niquests, whose urllib3-future would otherwise replace urllib3
	@# for every library (zeep, schemathesis): built from source it installs side by side.
	@URLLIB3_NO_OVERRIDE=1 $(BIN)/pip install --quiet --no-binary urllib3-future \
		-c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

system-deps:
	@scripts/system-deps

# The console's browser libraries, from the npm registry at build time and served by the
# hub itself: a browser on the IOC network fetches nothing from outside.
# axe-core stays in node_modules: only the browser tests use it.
$(VENDORED): package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund --ignore-scripts
	@rm -rf $(VENDOR) && mkdir -p $(VENDOR)/leaflet
	cp node_modules/hls.js/dist/hls.min.js $(VENDOR)/
	cp -r node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css \
		node_modules/leaflet/dist/images $(VENDOR)/leaflet/
	cp node_modules/leaflet.markercluster/dist/leaflet.markercluster.js \
		node_modules/leaflet.markercluster/dist/MarkerCluster.css \
		node_modules/leaflet.markercluster/dist/MarkerCluster.Default.css $(VENDOR)/leaflet/
	@touch $@

vendor: $(VENDORED)

# `make demo PORT=18080`; without PORT the hub's IOCHUB_HTTP__PORT (8080 by default).
demo: $(STAMP) system-deps vendor
	$(BIN)/iochub demo $(if $(PORT),--port $(PORT))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) system-deps vendor
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP) system-deps
	@echo "benchmarks (run one at a time on a quiet machine):"
	@echo "  $(BIN)/python -m bench.ingest         sensor ingest vs broker relay and COPY"
	@echo "  $(BIN)/python -m bench.alerts         MQTT breach to signed webhook, rule evaluator"
	@echo "  $(BIN)/python -m bench.alerts_delivery  outbox commit to webhook"
	@echo "  $(BIN)/python -m bench.fanout         broadcast fan-out to 272 and 10,000 speakers"
	@echo "  $(BIN)/python -m bench.camera_sweep   ONVIF health sweep over 150 cameras"
	@echo "  $(BIN)/python -m bench.dashboards     every Grafana panel over 30 days of the demo fleet"
	@echo "  $(BIN)/python -m bench.camera_view    live view: first segment, CPU per stream, streams held"
	@echo "  $(BIN)/python -m bench.rollout        firmware rollout to 272 and 10,000 speakers"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache node_modules hub/web/static/vendor
