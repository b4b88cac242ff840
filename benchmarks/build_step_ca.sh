#!/usr/bin/env bash
# Build step-ca (github.com/smallstep/certificates) from the Go module proxy into a version-keyed
# cache beside the local cluster's binaries, for `make bench-ca`; nothing is rebuilt when the
# cache holds it. Prints the binary's path on stdout (progress goes to stderr).
# The module proxy and GOFLAGS are the host's own Go configuration (`go env`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/../hack/versions.sh"
STEP_CA_VERSION=${STEP_CA_VERSION:-v0.30.2}
out=$CACHE_ROOT/step-ca-$STEP_CA_VERSION/bin

log() { printf '==> [bench-ca] %s\n' "$*" >&2; }

if [ -x "$out/step-ca" ]; then
    log "step-ca $STEP_CA_VERSION: cached in $out"
else
    if ! command -v go >/dev/null; then
        echo "ERROR: the Go toolchain (go 1.24 or newer, on PATH) is needed to build step-ca" >&2
        exit 1
    fi
    log "step-ca $STEP_CA_VERSION: building from the module proxy into $out" \
        "(cold: a few minutes on 2 cores)"
    start=$(date +%s)
    mkdir -p "$out"
    # Two cores: one package compile at a time besides the linker, as the cluster build does.
    GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$out" GOFLAGS="$(go env GOFLAGS) -p=2" \
        go install -trimpath -ldflags="-s -w" \
        "github.com/smallstep/certificates/cmd/step-ca@$STEP_CA_VERSION"
    log "step-ca $STEP_CA_VERSION: built in $(($(date +%s) - start)) s"
fi
echo "$out/step-ca"
