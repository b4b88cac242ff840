#!/usr/bin/env bash
# The previous release (PREVIOUS_COMMIT in versions.sh) for the upgrade e2e: its source (chart,
# k8s/, Dockerfiles) from `git archive` of the pinned commit into a cache directory keyed by the
# commit, and its images hello-mtls/{ca,server,client}:$PREVIOUS_RELEASE built from it on the
# local base as `make images` builds; each is skipped when the cache already has it (the images
# carry the commit as a label). Usage: previous-release.sh build | load | source
#   build   the source and the images (needs docker; no cluster)
#   load    copy the images into the local cluster (as `make load-images`)
#   source  print the release's tag and its source directory (fails before `build`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/versions.sh"
# shellcheck source=hack/host.sh
source "$here/host.sh"

APPS=(ca server client)
LABEL=dev.hello-mtls.commit
LOCAL_BASE=hello-mtls/python-base:bookworm

say() { printf '==> [previous-release %s] %s\n' "$PREVIOUS_RELEASE" "$*" >&2; }

build_source() {
    if [ -f "$PREVIOUS_SOURCE/.complete" ]; then
        say "source of ${PREVIOUS_COMMIT:0:12} cached in $PREVIOUS_SOURCE"
        return
    fi
    say "git archive ${PREVIOUS_COMMIT:0:12} into $PREVIOUS_SOURCE"
    local partial=$PREVIOUS_SOURCE.partial
    rm -rf "$partial"
    mkdir -p "$partial"
    git -C "$here/.." archive "$PREVIOUS_COMMIT" | tar -x -C "$partial"
    touch "$partial/.complete"
    rm -rf "$PREVIOUS_SOURCE"
    mv "$partial" "$PREVIOUS_SOURCE"
}

build_images() {
    host_dockerd
    local base=python:3.12-slim app image
    docker image inspect "$LOCAL_BASE" >/dev/null 2>&1 && base=$LOCAL_BASE
    for app in "${APPS[@]}"; do
        image=hello-mtls/$app:$PREVIOUS_RELEASE
        if [ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$image" 2>/dev/null)" = "$PREVIOUS_COMMIT" ]; then
            say "$image of ${PREVIOUS_COMMIT:0:12} cached"
            continue
        fi
        say "docker build $image (base $base)"
        docker build --network host --build-arg PYTHON_IMAGE="$base" --label "$LABEL=$PREVIOUS_COMMIT" \
            -f "$PREVIOUS_SOURCE/Dockerfile.$app" -t "$image" "$PREVIOUS_SOURCE"
    done
}

case ${1:-} in
build)
    build_source
    build_images
    ;;
load)
    for app in "${APPS[@]}"; do
        "$here/load-images.sh" "hello-mtls/$app:$PREVIOUS_RELEASE"
    done
    ;;
source)
    [ -f "$PREVIOUS_SOURCE/.complete" ] || {
        echo "ERROR: no source of $PREVIOUS_RELEASE in $PREVIOUS_SOURCE: run $0 build" >&2
        exit 1
    }
    echo "$PREVIOUS_RELEASE $PREVIOUS_SOURCE"
    ;;
*)
    echo "usage: $0 build | load | source" >&2
    exit 2
    ;;
esac
