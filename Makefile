# Entourage developer tasks. Everything a fresh Debian machine (Python, pip, gcc, git) needs is
# installed from here: the virtualenv, the test tools (busybox, socat, curl), helm and kubectl.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
HELM := $(CURDIR)/.tools/helm
KUBECTL := $(CURDIR)/.tools/kubectl
CERT_DIR := certs

.PHONY: all venv compile tools certs run test lint format golden bench soak mutate lock lock-check image clean

all: test

# The image's locked dependencies and build tools first, so the tests run (and the compiled build
# is made by) exactly the versions the image ships (tests/test_dockerfile.py checks it); then the
# package and the test tools.
$(VENV)/.installed: pyproject.toml requirements/image.lock requirements/build.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes --no-deps --only-binary=:all: -r requirements/image.lock -r requirements/build.lock
	$(PY) -m pip install -q -e '.[test,lint,compile]'
	touch $@

venv: $(VENV)/.installed

# The hot path compiled with mypyc (webhook/compiled.py says which modules, and uses the build only
# while it matches their sources); rebuilt after any change to the package (about a minute).
COMPILED := webhook/_compiled/manifest.json
$(COMPILED): $(wildcard webhook/*.py webhook/*/*.py webhook/*/*/*.py) scripts/compile.py | venv
	$(PY) scripts/compile.py

compile: $(COMPILED)

# Debian binaries that tests run for real (setcap: tests/test_privileged_ports.py), helm for the
# chart tests and kubectl for the chart's `helm test` pod (its exact arguments run against the fake API server).
tools: $(HELM) $(KUBECTL)
	@command -v busybox >/dev/null && command -v socat >/dev/null && command -v curl >/dev/null && command -v setcap >/dev/null && command -v wrk >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox socat curl libcap2-bin wrk)

$(HELM):
	scripts/install-helm.sh $(HELM)

$(KUBECTL):
	scripts/install-kubectl.sh $(KUBECTL)

$(CERT_DIR)/tls.crt: | venv
	$(BIN)/entourage certs --service entourage --namespace entourage --out-dir $(CERT_DIR)

certs: $(CERT_DIR)/tls.crt

## run: serve the webhook on https://127.0.0.1:8443 with development certificates
run: venv compile certs
	$(BIN)/entourage serve --tls-cert-file $(CERT_DIR)/tls.crt --tls-private-key-file $(CERT_DIR)/tls.key \
	  --host 127.0.0.1 --port 8443

## test: the whole test suite on the compiled build, then the engine's and the endpoint's tests
## interpreted, golden files included (a few minutes on 2 cores)
INTERPRETED_TESTS := tests/test_golden.py tests/test_inject_pipe.py tests/test_inject.py tests/test_odd_pods.py \
  tests/test_decide.py tests/test_endpoint.py
test: venv tools compile
	HELM=$(HELM) KUBECTL=$(KUBECTL) $(BIN)/pytest -q
	ENTOURAGE_INTERPRETED=1 $(BIN)/pytest -q $(INTERPRETED_TESTS)

## lint: ruff (rules and format) and mypy --strict over webhook/; zero findings on main
lint: venv
	$(BIN)/ruff check webhook tests soak bench scripts
	$(BIN)/ruff format --check webhook tests soak bench scripts
	$(BIN)/mypy

## format: apply ruff's safe fixes and the formatter
format: venv
	$(BIN)/ruff check --fix webhook tests soak bench scripts
	$(BIN)/ruff format webhook tests soak bench scripts

## golden: rewrite tests/testdata/inject/*.injected and tests/testdata/pipe/*.result from the current engine
golden: venv
	REFRESH_GOLDEN=1 $(BIN)/pytest -q tests/test_golden.py tests/test_inject_pipe.py

## bench: req/s and latency of `entourage serve` against a bare-uvicorn baseline, with wrk (~5 min)
bench: venv compile
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(BIN)/python -m bench

## soak: reliability run (~8 min on 2 cores): 3-min soak, 10x burst, faults under load, 100k fuzz inputs, listener floods;
## then the adversarial bodies and the memory flood, 1M requests (~30 min more; SOAK_ARGS=--memory-requests N)
soak: venv compile
	$(BIN)/python -m soak $(SOAK_ARGS)

## mutate: mutation testing (mutmut, one worker) of the engine and the admission code against the
## in-process tests, then the kill rate per module; not part of `make test` (about an hour on 2 busy
## cores for every module; results are kept in mutants/, so a second run only tests what changed).
## One module: make mutate MUTANTS='webhook.engine.grammar.*'
MUTANTS ?=
mutate: $(VENV)/.mutate
	$(BIN)/mutmut run --max-children 1 $(MUTANTS)
	$(PY) scripts/mutation_report.py --fail-under 90

$(VENV)/.mutate: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[mutate]'
	touch $@

## lock: recompile requirements/image.lock (the image's runtime dependencies: pyproject's [project]
## dependencies, pinned with the sha256 of every file PyPI has for each version) and
## requirements/build.lock (the build backend, from [build-system] requires, and mypyc, the compile
## extra), for CPython 3.11 on Linux. Resolved for x86_64 and again for aarch64: the two must agree (the image is multi-arch).
## Existing pins are kept unless pyproject.toml needs otherwise; make lock LOCK_ARGS=--upgrade
## moves everything to the newest versions.
LOCK := requirements/image.lock
BUILD_LOCK := requirements/build.lock
LOCK_ARGS ?=
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
  --custom-compile-command 'make lock' $(LOCK_ARGS)
lock: $(VENV)/.release
	$(UV_COMPILE) --python-platform x86_64-manylinux_2_36 pyproject.toml -o $(LOCK)
	set -e; other=$$(mktemp); cp $(LOCK) $$other; \
	  $(UV_COMPILE) --python-platform aarch64-manylinux_2_36 pyproject.toml -o $$other; \
	  if ! cmp -s $(LOCK) $$other; then diff $(LOCK) $$other; rm -f $$other; \
	    echo 'x86_64 and aarch64 resolve differently: the image cannot use one lock' >&2; exit 1; fi; \
	  rm -f $$other
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb")); print(*p["build-system"]["requires"], *p["project"]["optional-dependencies"]["compile"], sep="\n")' \
	  | $(UV_COMPILE) --python-platform x86_64-manylinux_2_36 - -o $(BUILD_LOCK)

$(VENV)/.release: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[release]'
	touch $@

## lock-check: `pip install --dry-run --require-hashes` of both locks for linux x86_64 and aarch64
## from PyPI: every pinned version has a wheel for both, and its hash is in the lock (~25 s, network)
MANYLINUX := $(foreach minor,17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36,manylinux_2_$(minor))
lock-check: venv
	set -e; for arch in x86_64 aarch64; do target=$$(mktemp -d); \
	  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(PY) -m pip install -q --dry-run --require-hashes --no-deps \
	    --only-binary=:all: --python-version 3.11 --implementation cp \
	    $(foreach tag,$(MANYLINUX),--platform $(tag)_$$arch) \
	    --target $$target -r $(LOCK) -r $(BUILD_LOCK); \
	  rm -rf $$target; echo "$(LOCK), $(BUILD_LOCK): installable on linux/$$arch"; done

## image: build the multi-arch image (needs docker buildx; IMAGE=registry/entourage:tag PUSH=1 to push)
IMAGE ?= entourage:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
PLATFORMS ?= linux/amd64,linux/arm64
image:
	docker buildx build --platform $(PLATFORMS) --tag $(IMAGE) $(if $(PUSH),--push,) .

clean:
	rm -rf $(VENV) .tools .pytest_cache mutants webhook/_compiled
