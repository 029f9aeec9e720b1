# onload-operator: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The images are tagged with the project's version (make release VERSION=x.y.z moves both).
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMG ?= docker.io/onload/onload-operator-py:$(VERSION)
DEVICE_IMG ?= docker.io/onload/onload-device-plugin-py:$(VERSION)
# The one pinned base of both Dockerfiles (their ARG BASE_IMAGE says the same).
BASE_IMAGE ?= docker.io/library/python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
# docker or buildah; empty: docker where its daemon answers, else buildah.
CONTAINER_TOOL ?=
IMAGE_ENV = IMG=$(IMG) DEVICE_IMG=$(DEVICE_IMG) BASE_IMAGE=$(BASE_IMAGE) CONTAINER_TOOL=$(CONTAINER_TOOL)
GENERATED := crds device_plugin/v1beta1 docs/configuration.md config/samples/profiles

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## Create the local virtualenv (.venv) with every dependency.

.PHONY: sandbox
sandbox: install ## Run the operator against a local emulated cluster and apply a sample Onload CR.
	$(BIN)/python -m hack.sandbox

.PHONY: test
test: install ## Run the unit, emulator, integration and device-plugin tests.
	$(BIN)/pytest

.PHONY: test-unit
test-unit: install ## Run the pure unit tests only (seconds): planner, renderers, models.
	$(BIN)/pytest tests/unit

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
manifests: install ## Generate the CRD, docs/configuration.md and the profile ConfigMap samples.
	$(BIN)/python hack/gen_crd.py
	$(BIN)/python hack/gen_docs.py
	$(BIN)/onload-profile-to-configmap --output-dir config/samples/profiles config/samples/profiles/opf/*.opf

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
images: ## Build both images (Docker where a daemon answers, else buildah; see image-base).
	$(IMAGE_ENV) hack/images.sh build

.PHONY: image-base
image-base: ## Pull the pinned base image, or build a stand-in from Debian packages where no registry answers.
	$(IMAGE_ENV) hack/images.sh base

.PHONY: image-check
image-check: install image-base images ## Opt-in, not in CI (~2.5 GB, minutes): run both images as deployed.
	$(IMAGE_ENV) $(BIN)/python hack/image_check.py

.PHONY: release
release: install ## Set the version in pyproject.toml and the image tags in config/: make release VERSION=x.y.z.
	$(BIN)/python hack/release.py $(VERSION)

.PHONY: e2e
e2e: ## Opt-in, needs Docker, kind and kubectl: deploy to a kind cluster and check (see README).
	IMG=$(IMG) DEVICE_IMG=$(DEVICE_IMG) hack/e2e.sh

.PHONY: deploy
deploy: ## Deploy the operator to the current cluster (kubectl apply -k config/default).
	kubectl apply -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	kubectl delete -k config/default --ignore-not-found
