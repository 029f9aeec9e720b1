#!/usr/bin/env bash
# Build the operator and device-plugin images, with Docker where a daemon answers and with buildah otherwise.
#
#   hack/images.sh base    pull the pinned base image, or build a stand-in for it from Debian packages
#   hack/images.sh build   build both images (make images)
#
# Environment: IMG, DEVICE_IMG (image names), BASE_IMAGE (the pinned base of both Dockerfiles), STANDIN_IMAGE
# (the name of the stand-in), CONTAINER_TOOL (docker or buildah; default: docker if its daemon answers).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${IMG:?IMG is not set}" "${DEVICE_IMG:?DEVICE_IMG is not set}" "${BASE_IMAGE:?BASE_IMAGE is not set}"
STANDIN_IMAGE=${STANDIN_IMAGE:-localhost/onload-python-standin:3.11-bookworm}
# buildah and podman read these instead of /etc/containers (vfs storage, runc, lowered ulimits).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/hack/containers/containers.conf}
export CONTAINERS_STORAGE_CONF=${CONTAINERS_STORAGE_CONF:-$PWD/hack/containers/storage.conf}

say() { printf '==> %s\n' "$*" >&2; }

container_tool() {
  if [[ -n ${CONTAINER_TOOL:-} ]]; then
    echo "$CONTAINER_TOOL"
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  else
    echo buildah
  fi
}

# Debian's buildah, podman, runc and mmdebstrap: installed when missing and we may (root with apt-get).
need_debian_tools() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    say "missing: ${missing[*]} (Debian: apt-get install ${missing[*]})"
    exit 1
  fi
}

have_image() { podman image exists "$1"; }

# The stand-in: a Debian bookworm minbase root filesystem with Debian's python3 (3.11), python3-venv and
# ca-certificates, with merged /usr set up by mmdebstrap's hook (the usrmerge package would bring perl), the
# documentation, manuals and locales left out as in Debian's slim images, and no compiled standard library (Debian
# compiles it when installing; the official image deletes its .pyc files). It has `python3` on PATH like the
# official image, which is all the Dockerfiles rely on.
build_standin() {
  need_debian_tools mmdebstrap podman
  local tarball status=0
  tarball=$(mktemp --suffix=.tar)
  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook='find "$1/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    bookworm "$tarball" && podman import --change 'CMD ["python3"]' "$tarball" "$STANDIN_IMAGE" >/dev/null ||
    status=$?
  rm -f "$tarball"
  ((status == 0)) || exit "$status"
  say "built the stand-in base $STANDIN_IMAGE from Debian bookworm packages (not $BASE_IMAGE)"
}

# Prints the base to build from: the pinned one if it is here or can be pulled, else the stand-in.
resolve_base() {
  if have_image "$BASE_IMAGE" || podman pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "$BASE_IMAGE"
  elif have_image "$STANDIN_IMAGE"; then
    say "no registry reachable for $BASE_IMAGE: using the stand-in $STANDIN_IMAGE (make image-base)"
    echo "$STANDIN_IMAGE"
  else
    say "$BASE_IMAGE cannot be pulled and there is no stand-in: run make image-base"
    exit 1
  fi
}

cmd_base() {
  local tool
  tool=$(container_tool)
  if [[ $tool == docker ]]; then
    docker pull "$BASE_IMAGE"
    return
  fi
  need_debian_tools podman
  if have_image "$BASE_IMAGE" || podman pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    say "$BASE_IMAGE is here"
  elif have_image "$STANDIN_IMAGE"; then
    say "no registry reachable for $BASE_IMAGE; the stand-in $STANDIN_IMAGE is already built"
  else
    say "no registry reachable for $BASE_IMAGE: building a stand-in from Debian packages"
    build_standin
  fi
}

cmd_build() {
  local tool base
  tool=$(container_tool)
  if [[ $tool == docker ]]; then
    docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f Dockerfile.operator -t "$IMG" .
    docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f Dockerfile.deviceplugin -t "$DEVICE_IMG" .
    return
  fi
  need_debian_tools buildah podman runc
  base=$(resolve_base)
  # chroot isolation and the host network: no daemon, no CNI. pip in the build stage needs the host's CA bundle;
  # it is mounted for the RUN steps only and does not end up in the image.
  local -a flags=(--layers --isolation chroot --network host --build-arg "BASE_IMAGE=$base")
  [[ -r /etc/ssl/certs/ca-certificates.crt ]] &&
    flags+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  buildah build "${flags[@]}" -f Dockerfile.operator -t "$IMG" .
  buildah build "${flags[@]}" -f Dockerfile.deviceplugin -t "$DEVICE_IMG" .
  podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F -e "$IMG" -e "$DEVICE_IMG" >&2 || true
}

case ${1:-} in
  base) cmd_base ;;
  build) cmd_build ;;
  *) echo "usage: $0 base|build" >&2; exit 2 ;;
esac
