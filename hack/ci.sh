#!/usr/bin/env bash
# The CI stage that needs a cluster: start the local cluster, build and load the images, run the
# e2e suite (a full Helm pass, then the install-independent scenarios with `kubectl apply -f k8s/`)
# and always tear the cluster down again. Every step prints how long it took.
#
# It needs the machine to itself: it refuses to run while a local cluster is already up, because
# its teardown would stop a cluster other people are using.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

# The Helm pass runs every scenario. The kubectl pass installs the previous release's k8s/, applies
# k8s/ over it under traffic (the upgrade e2e: docs/upgrades.md), patches the bounds into the CA
# state that already exists (what a k8s/ user does) and runs, on that install, what
# depends on the objects installed: the examples' hello, RBAC and the write policy, the
# NetworkPolicies, both admission policies with their variables edited, and one renewal run
# (FastAPI + httpx, 2-minute certificates) that needs the patched minimum. The operator's and
# the CA's behaviour (opt-in, restarts, garbage collection, the key scan, the 10-minute renewal,
# the root rotation) does not depend on how the same objects were created (k8s/ is the chart's
# output, `make lint` checks it): it runs once, in the Helm pass, as do the chart checks.
KUBECTL_PASS="tests/e2e/test_hello.py tests/e2e/test_least_privilege.py"
KUBECTL_PASS+=" tests/e2e/test_network_policies.py tests/e2e/test_admission_names.py"
KUBECTL_PASS+=" tests/e2e/test_admission_wiring.py tests/e2e/test_example_stacks.py"

stage_start=$SECONDS
timed() {  # description command...
    local what=$1 start=$SECONDS
    shift
    printf '\n==> [ci-cluster] %s\n' "$what" >&2
    "$@"
    printf '==> [ci-cluster] %s: %d s\n' "$what" $((SECONDS - start)) >&2
}

if component_running kube-apiserver; then
    echo "ERROR: a local cluster is already running (pid $(cat "$PIDS/kube-apiserver")):" \
        "the CI stage would stop it at the end; run 'make cluster-down' first" >&2
    exit 1
fi

finish() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -d "$LOGS" ]; then
        echo "==> [ci-cluster] failed; last lines of every component log in $LOGS:" >&2
        for log in "$LOGS"/*.log; do
            printf -- '--- %s ---\n' "$log" >&2
            tail -n 15 "$log" >&2
        done
    fi
    timed "cluster-down" make cluster-down || true
    printf '==> [ci-cluster] stage %s after %d s\n' \
        "$([ "$status" -eq 0 ] && echo passed || echo FAILED)" $((SECONDS - stage_start)) >&2
    exit "$status"
}
trap finish EXIT

# Leftovers of an earlier run on a reused machine (state, mounts, chains) go first.
timed "clean leftovers of earlier runs" make cluster-down
timed "python-base (local base image)" make python-base
timed "cluster-up (build or reuse binaries, start, wait for node Ready and DNS)" make cluster-up
timed "images" make images
timed "load-images" make load-images
# The upgrade from the previous release and the federation of two installs install the product
# themselves, so they run before the Helm pass installs the working tree (it deselects them;
# docs/upgrades.md, docs/federation.md), side by side: each install serves its own namespaces.
# The upstream root's install (docs/ca.md) serves every namespace, so it runs after them, alone.
timed "previous release $PREVIOUS_RELEASE: source and images (cached by commit)" \
    hack/previous-release.sh build
timed "load-images (previous release $PREVIOUS_RELEASE)" hack/previous-release.sh load
timed "e2e, upgrade from $PREVIOUS_RELEASE and federation" \
    make e2e E2E_TESTS="tests/e2e/test_upgrades.py tests/e2e/test_federation.py"
timed "e2e, upstream root" make e2e E2E_TESTS=tests/e2e/test_upstream_root.py
timed "e2e, Helm pass (all scenarios)" make e2e E2E_INSTALL=helm
timed "e2e, kubectl pass (k8s/ applied over $PREVIOUS_RELEASE's under traffic, then the scenarios)" \
    make e2e E2E_INSTALL=kubectl E2E_TESTS="$KUBECTL_PASS"
