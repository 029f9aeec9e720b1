#!/bin/sh
# Regenerate the Python modules and type stubs for the kubelet device-plugin API.
# The -I root mirrors the Python package layout, so protos/device_plugin/v1beta1/api.proto becomes
# device_plugin/v1beta1/api_pb2.py with imports of the form "from device_plugin.v1beta1 import api_pb2".
# Output depends only on the pinned grpcio-tools and mypy-protobuf versions, so `make verify` can
# regenerate and compare with git.
set -eu
cd "$(dirname "$0")/.."
# The interpreter with grpcio-tools; its directory also holds the protoc-gen-mypy plugins.
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON="$(command -v python3)"; fi
fi
PATH="$(dirname "$PYTHON"):$PATH"
export PATH
"$PYTHON" -m grpc_tools.protoc \
    -I protos \
    --python_out=. \
    --grpc_python_out=. \
    --mypy_out=. \
    --mypy_grpc_out=. \
    protos/device_plugin/v1beta1/api.proto
touch device_plugin/v1beta1/__init__.py
