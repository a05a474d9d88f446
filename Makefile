# One-command workflows. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The TypeScript client (README "TypeScript client"): its npm packages, protoc-gen-es among them, pinned by package-lock.json.
TS_CLIENT := src/clients/typescript
NPM_STAMP := $(TS_CLIENT)/node_modules/.installed-stamp
# The web console's browser test (README "Web console"): playwright-core, pinned by package-lock.json; it drives
# Debian's chromium and never downloads a browser.
BROWSER_TESTS := tests/browser
BROWSER_STAMP := $(BROWSER_TESTS)/node_modules/.installed-stamp
# Third-party JavaScript clients the e2e tests run (the Vercel AI SDK), pinned by tests/js/package-lock.json.
JS_TESTS := tests/js
JS_STAMP := $(JS_TESTS)/node_modules/.installed-stamp

.PHONY: install run test lint protos check-protos bench clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

$(NPM_STAMP): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

$(JS_STAMP): $(JS_TESTS)/package.json $(JS_TESTS)/package-lock.json
	cd $(JS_TESTS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

$(BROWSER_STAMP): $(BROWSER_TESTS)/package.json $(BROWSER_TESTS)/package-lock.json
	cd $(BROWSER_TESTS) && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $(BROWSER_STAMP)

install: $(STAMP) $(NPM_STAMP) $(BROWSER_STAMP) $(JS_STAMP)

# Debian's chromium for tests/e2e/test_console_browser.py (CI runs as root on Debian).
chromium:
	@command -v chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

## run: the proxy on embedded defaults (SQLite, three simulated nodes); prints the API key.
run: install
	$(BIN)/atoma-proxy demo

## test: lint, proto checks, then the whole test suite (SQLite and PostgreSQL).
test: install lint check-protos chromium
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src
	cd $(TS_CLIENT) && node_modules/.bin/tsc -p . --noEmit
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	@if git rev-parse -q --verify main >/dev/null 2>&1 && git cat-file -e main:protos 2>/dev/null; then \
		$(BIN)/buf breaking --against '.git#branch=main,subdir=.'; fi

## protos: regenerate generated/ from protos/ (pb2, pyi, grpc; TypeScript in generated/ts).
protos: install
	rm -rf generated/atoma/routing/v1/*_pb2*.py* generated/atoma/accounts/v1/*_pb2*.py* generated/ts
	$(BIN)/buf generate

## check-protos: fail when generated/ is not what `make protos` would write.
check-protos: install
	rm -rf build/protos-check && mkdir -p build/protos-check
	$(BIN)/buf generate --output build/protos-check
	diff -r -x '__init__.py' -x '__pycache__' build/protos-check/generated generated \
		|| (echo "generated/ is stale: run 'make protos' and commit the result" && exit 1)

## bench: side-by-side benchmarks (see bench/README.md); e.g. make bench BENCH_ARGS="--profile".
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache .ruff_cache .mypy_cache
