#!/bin/sh
# Builds the Go example offline from Debian's packages (examples/go/README.md): the Go code is
# generated from protos/ into a GOPATH workspace under OUT_DIR, the libraries come from
# /usr/share/gocode, and nothing is downloaded.
#   examples/go/build.sh [OUT_DIR]    (default examples/go/build; the binary is OUT_DIR/sscard-example)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
protos=$(cd "$here/../../protos" && pwd)
out=${1:-$here/build}
mkdir -p "$out"
out=$(cd "$out" && pwd)
gocode=${SSCARD_GOCODE:-/usr/share/gocode}
if [ ! -f "$gocode/src/github.com/golang/protobuf/proto/registry.go" ]; then
  echo "build.sh: github.com/golang/protobuf v1.5 is missing from $gocode" \
    "(apt-get install golang-github-golang-protobuf-1-5-dev)" >&2
  exit 1
fi

workspace="$out/gopath"
rm -rf "$workspace"
mkdir -p "$workspace/src/sscard/examples/go"
# The sscard protos name their Go packages sscard/gen/go/...; google/type/date.proto is
# Debian's google.golang.org/genproto/googleapis/type/date.
protoc -I "$protos" --go_out="$workspace/src" --go-grpc_out="$workspace/src" \
  $(cd "$protos" && find sscard -name '*.proto' | sort)
cp "$here/main.go" "$workspace/src/sscard/examples/go/"

GO111MODULE=off GOPATH="$workspace:$gocode" GOPROXY=off GOFLAGS= \
  go build -o "$out/sscard-example" sscard/examples/go
