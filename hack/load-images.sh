#!/usr/bin/env bash
# Copy docker images into the local cluster's containerd (the kind equivalent is
# `kind load docker-image IMAGE...`). Usage: load-images.sh IMAGE...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/versions.sh"
# shellcheck source=hack/host.sh
source "$here/host.sh"

[ $# -gt 0 ] || { echo "usage: $0 IMAGE..." >&2; exit 2; }
[ -S "$CONTAINERD_SOCK" ] || { echo "ERROR: the local cluster is not running (make cluster-up)" >&2; exit 1; }
for image in "$@"; do
    printf '==> [load-images] %s\n' "$image" >&2
    load_image "$image"
done
