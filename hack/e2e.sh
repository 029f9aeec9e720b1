#!/usr/bin/env bash
# make e2e: the operator on a real Kubernetes cluster made with kind. Opt-in and not in CI: it needs a Docker
# daemon, kind and kubectl, and network access to the registries of KMM and cert-manager. README.md, section
# "End-to-end on a kind cluster", lists the same steps for a person with a cluster.
#
# Environment: IMG, DEVICE_IMG (the images, built here with make images), CLUSTER (kind cluster name, default
# onload-e2e; kept afterwards, delete it with `kind delete cluster --name onload-e2e`), KMM_MANIFESTS and
# CERT_MANAGER_MANIFEST (what to install), E2E_TIMEOUT (seconds per wait, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${IMG:?IMG is not set}" "${DEVICE_IMG:?DEVICE_IMG is not set}"
CLUSTER=${CLUSTER:-onload-e2e}
CERT_MANAGER_MANIFEST=${CERT_MANAGER_MANIFEST:-https://github.com/cert-manager/cert-manager/releases/download/v1.11.0/cert-manager.yaml}
KMM_MANIFESTS=${KMM_MANIFESTS:-https://github.com/kubernetes-sigs/kernel-module-management/config/default}
TIMEOUT=${E2E_TIMEOUT:-300}
SAMPLE=config/samples/onload/overlays/pre-built
CR=onload

say() { printf '==> %s\n' "$*"; }
fail() { printf 'e2e FAILED: %s\n' "$*" >&2; exit 1; }

missing=()
command -v kind >/dev/null || missing+=("kind (https://kind.sigs.k8s.io)")
command -v kubectl >/dev/null || missing+=("kubectl")
if ! command -v docker >/dev/null; then
  missing+=("docker")
elif ! docker info >/dev/null 2>&1; then
  missing+=("a running Docker daemon (docker info fails)")
fi
if ((${#missing[@]})); then
  echo "make e2e cannot run here; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  echo "It is opt-in and not part of make test; see README.md, End-to-end on a kind cluster." >&2
  exit 2
fi

# Polls a command until it succeeds, for at most TIMEOUT seconds.
wait_until() {
  local what=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what (after ${TIMEOUT}s)"
    sleep 2
  done
  say "$what"
}

cr_field() { kubectl get onload "$CR" -o "jsonpath=$1"; }

say "cluster $CLUSTER"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s
kubectl config use-context "kind-$CLUSTER" >/dev/null

say "images"
CONTAINER_TOOL=docker make images IMG="$IMG" DEVICE_IMG="$DEVICE_IMG"
kind load docker-image --name "$CLUSTER" "$IMG" "$DEVICE_IMG"

say "cert-manager and KMM"
kubectl apply -f "$CERT_MANAGER_MANIFEST"
kubectl -n cert-manager wait --for=condition=Available --timeout="${TIMEOUT}s" \
  deployment/cert-manager deployment/cert-manager-cainjector deployment/cert-manager-webhook
kubectl apply -k "$KMM_MANIFESTS"
wait_until "KMM's Module CRD is established" kubectl wait --for=condition=Established crd/modules.kmm.sigs.x-k8s.io

say "the operator (config/default with the images just built)"
# kustomize takes bases by relative path only: the overlay lives in the work tree while it is applied.
overlay=$(mktemp -d "$PWD/.e2e-overlay.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
# The device-plugin image is also the value of DEVICE_PLUGIN_IMG: config/manager's kustomizeconfig.yaml says so.
cp config/manager/kustomizeconfig.yaml "$overlay/"
cat >"$overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../config/default
configurations:
  - kustomizeconfig.yaml
images:
  - name: docker.io/onload/onload-operator-py
    newName: ${IMG%:*}
    newTag: ${IMG##*:}
  - name: docker.io/onload/onload-device-plugin-py
    newName: ${DEVICE_IMG%:*}
    newTag: ${DEVICE_IMG##*:}
EOF
kubectl apply -k "$overlay"
kubectl -n onload-operator-system rollout status deployment --timeout="${TIMEOUT}s"

say "a sample Onload CR on the kind workers"
kubectl label nodes --all node-role.kubernetes.io/worker= --overwrite
kubectl apply -k "$SAMPLE"
wait_until "the Onload Module exists" kubectl get module "$CR-module"
wait_until "the device-plugin DaemonSet exists" kubectl get daemonset "$CR-onload-device-plugin-ds"
wait_until "status.nodes.selected counts the nodes" test "$(cr_field '{.status.nodes.selected}')" -gt 0
# Without Onload hardware the devices are Unhealthy: capacity shows amd.com/onload, allocatable stays 0.
capacity() { kubectl get nodes -o jsonpath='{.items[*].status.capacity.amd\.com/onload}' | grep -q '[1-9]'; }
wait_until "node capacity shows amd.com/onload" capacity
kubectl get nodes -o custom-columns='NODE:.metadata.name,CAPACITY:.status.capacity.amd\.com/onload,ALLOCATABLE:.status.allocatable.amd\.com/onload'

say "a version change rolls node by node"
old=$(cr_field '{.spec.onload.version}')
new="$old-e2e"
kubectl patch onload "$CR" --type merge -p "{\"spec\":{\"onload\":{\"version\":\"$new\"}}}"
seen=()
deadline=$((SECONDS + TIMEOUT))
until [[ $(cr_field '{.status.version}') == "$new" ]]; do
  ((SECONDS < deadline)) || fail "status.version did not reach $new (nodes upgraded in order: ${seen[*]:-none})"
  current=$(cr_field '{.status.upgrade.currentNode}' 2>/dev/null || true)
  if [[ -n $current && ${seen[-1]:-} != "$current" ]]; then
    seen+=("$current")
    say "upgrading $current"
  fi
  sleep 2
done
say "upgraded to $new, one node at a time: ${seen[*]:-(single node)}"
echo "e2e passed on kind cluster $CLUSTER"
