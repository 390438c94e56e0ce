#!/usr/bin/env bash
# An independent client of the public API: Debian's python3-grpcio under /usr/bin/python3 (not
# the `python3` on PATH), with stubs generated here from proto/hvstack/v1/vm.proto by Debian's
# protoc and grpc_python_plugin. The client itself is python_client_test.py.
set -euo pipefail

RUNFILES="${TEST_SRCDIR:?run me with bazel test}/hvstack"
PY=/usr/bin/python3

if [[ ! -x "$PY" ]] || ! "$PY" -c 'import grpc, google.protobuf' 2>/dev/null; then
  echo "SKIP: $PY cannot import grpc and google.protobuf; install Debian's python3-grpcio and" \
    "python3-protobuf (deploy/install-deps.sh)"
  exit 0
fi
for tool in protoc /usr/bin/grpc_python_plugin; do
  command -v "$tool" >/dev/null || {
    echo "SKIP: $tool not found; install Debian's protobuf-compiler and protobuf-compiler-grpc"
    exit 0
  }
done
if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  echo "SKIP: needs read/write access to /dev/kvm"
  exit 0
fi

gen="${TEST_TMPDIR:?}/gen"
rm -rf "$gen" && mkdir -p "$gen"
protoc -I "$RUNFILES/proto" -I /usr/include \
  --python_out="$gen" --grpc_python_out="$gen" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  "$RUNFILES/proto/hvstack/v1/vm.proto"
[[ -f "$gen/hvstack/v1/vm_pb2.py" && -f "$gen/hvstack/v1/vm_pb2_grpc.py" ]] || {
  echo "FAIL: protoc did not generate hvstack/v1/vm_pb2{,_grpc}.py"
  exit 1
}

exec env PYTHONPATH="$gen" "$PY" "$RUNFILES/tests/integration/python_client_test.py" \
  --vmms "$RUNFILES/vmms/vmms" --vmwp "$RUNFILES/vmwp/vmwp" --kernel "$RUNFILES/guest/spin.elf"
