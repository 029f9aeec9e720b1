# onload-operator: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
IMG ?= docker.io/onload/onload-operator-py:0.1.0
DEVICE_IMG ?= docker.io/onload/onload-device-plugin-py:0.1.0
CONTAINER_TOOL ?= docker
GENERATED := crds device_plugin/v1beta1

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create the local virtualenv (.venv) with every dependency.

.PHONY: sandbox
sandbox: install ## Run the operator against a local emulated cluster and apply a sample Onload CR.
	$(BIN)/python -m onload_operator.sandbox

.PHONY: test
test: install ## Run the unit, emulator, integration and device-plugin tests.
	$(BIN)/pytest

.PHONY: test-real-apiserver
test-real-apiserver: install ## Opt-in: CRDs, samples and kubesim's contract tests on a real API server.
	$(BIN)/python hack/real_apiserver.py

.PHONY: lint
lint: install ## ruff, mypy --strict and the import-linter layer contracts.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy onload_operator device_plugin kubesim hack tests bench
	$(BIN)/lint-imports

.PHONY: manifests
manifests: install ## Generate the CRD in crds/ from the API models.
	$(BIN)/python hack/gen_crd.py

.PHONY: protos
protos: install ## Generate the device-plugin gRPC stubs from protos/.
	PATH=$(abspath $(BIN)):$$PATH bash hack/gen_protos.sh

.PHONY: verify
verify: manifests protos ## Regenerate everything and fail on any difference; build every kustomization.
	git diff --exit-code -- $(GENERATED)
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { git status --porcelain -- $(GENERATED); exit 1; }
	@for k in $$(find config crds -name kustomization.yaml -printf '%h\n' | sort); do \
		kubectl kustomize $$k > /dev/null || { echo "kustomize failed: $$k"; exit 1; }; done

.PHONY: bench
bench: install ## Run the benchmarks and record them in BENCHMARKS.md.
	$(BIN)/python bench/run.py

.PHONY: run
run: install ## Run the operator against the cluster of the current KUBECONFIG.
	DEVICE_PLUGIN_IMG=$${DEVICE_PLUGIN_IMG:-$(DEVICE_IMG)} $(BIN)/onload-operator

.PHONY: images
images: ## Build the operator and device-plugin images.
	$(CONTAINER_TOOL) build -f Dockerfile.operator -t $(IMG) .
	$(CONTAINER_TOOL) build -f Dockerfile.deviceplugin -t $(DEVICE_IMG) .

.PHONY: deploy
deploy: ## Deploy the operator to the current cluster (kubectl apply -k config/default).
	kubectl apply -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	kubectl delete -k config/default --ignore-not-found
