#!/usr/bin/env bash
# Build the local cluster's binaries from the Go module proxy into a version-keyed cache.
#
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl and etcd
# come from one wrapper module (k8s.io/kubernetes requires its staging modules at v0.0.0, so each
# gets a replace to its published v0.Y.Z tag); CoreDNS, helm, kube-network-policies (the
# NetworkPolicy enforcer) and, from Kubernetes 1.35 on, containerd 2 are built in modules of their
# own.
# Nothing is rebuilt when the cache already holds the binaries of the pinned versions.
# Arguments name the parts to build (kubernetes, openapi, coredns, helm, netpol, containerd;
# default: all; containerd only for versions that need more than Debian's):
# `make lint` builds the pinned helm alone under CI=true for its k8s/ drift check.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

log() { printf '==> [build] %s\n' "$*" >&2; }

export GOTOOLCHAIN=local CGO_ENABLED=0
if ! command -v go >/dev/null; then
    echo "ERROR: the Go toolchain (go 1.24 or newer, on PATH) is needed to build the cluster's" \
        "binaries from the module proxy" >&2
    exit 1
fi
# Two cores: keep one package compile at a time per binary set so the machine stays usable.
export GOFLAGS="-p=2"

build_kubernetes() {
    local out="$K8S_BIN" work="$CACHE_ROOT/build/kubernetes-$K8S_VERSION"
    if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubelet" ] && [ -x "$out/etcd" ]; then
        log "kubernetes $K8S_VERSION + etcd: cached in $out"
        return
    fi
    log "kubernetes $K8S_VERSION + etcd: building in $work (cold: about 15 min on 2 idle cores)"
    mkdir -p "$work" "$out"
    cd "$work"
    [ -f go.mod ] || go mod init hello-mtls.invalid/k8sbuild >/dev/null 2>&1
    local gomod staging minor godebug etcd ldflags
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    staging="v0.${K8S_VERSION#v1.}"
    minor=$(echo "$K8S_VERSION" | cut -d. -f2)
    go mod edit -go="$(awk '$1=="go"{print $2; exit}' "$gomod")"
    godebug=$(awk '$1=="godebug"{print $2; exit}' "$gomod")
    [ -z "$godebug" ] || go mod edit -godebug="$godebug"
    for module in $(awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' "$gomod" | sort -u); do
        go mod edit -replace="$module=$module@$staging"
    done
    etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2; exit}' "$gomod")
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" -require="go.etcd.io/etcd/server/v3@$etcd"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean"
    done
    GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -tags=selinux,notest -ldflags="$ldflags" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
    GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags="-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
    # pause.c ships in the module zip; the pause image is built from it by the cluster scripts.
    cp "$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c" "$out/pause.c"
    chmod u+w "$out/pause.c"
}

keep_openapi() {
    # The exact version's OpenAPI document ships in the module zip (api/openapi-spec); the e2e
    # tier validates the chart's output against it without a cluster.
    if [ -s "$K8S_OPENAPI" ]; then
        log "kubernetes $K8S_VERSION OpenAPI document: cached in $K8S_OPENAPI"
        return
    fi
    local dir
    dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$(dirname "$K8S_OPENAPI")"
    cp "$dir/api/openapi-spec/swagger.json" "$K8S_OPENAPI"
    chmod u+w "$K8S_OPENAPI"
    log "kubernetes $K8S_VERSION OpenAPI document: $K8S_OPENAPI"
}

build_tool() {  # name module-path@version output-dir [name go install gives it]
    local name=$1 pkg=$2 out=$3 installed=${4:-$1}
    if [ -x "$out/$name" ]; then
        log "$name: cached in $out"
        return
    fi
    log "$name: building $pkg"
    mkdir -p "$out"
    GOBIN="$out" go install -trimpath -ldflags="-s -w" "$pkg"
    [ "$installed" = "$name" ] || mv "$out/$installed" "$out/$name"
}

build_containerd() {
    [ -n "$CONTAINERD_VERSION" ] || return 0
    if [ -x "$CONTAINERD_BIN/containerd" ] && [ -x "$CONTAINERD_BIN/containerd-shim-runc-v2" ] &&
        [ -x "$CONTAINERD_BIN/ctr" ]; then
        log "containerd $CONTAINERD_VERSION: cached in $CONTAINERD_BIN"
        return
    fi
    log "containerd $CONTAINERD_VERSION: building"
    mkdir -p "$CONTAINERD_BIN"
    # CGO off leaves out the btrfs snapshotter (cgo only); the cluster uses overlayfs.
    local module=github.com/containerd/containerd/v2
    GOBIN="$CONTAINERD_BIN" go install -trimpath -tags=urfave_cli_no_docs \
        -ldflags="-s -w -X $module/version.Version=$CONTAINERD_VERSION" \
        "$module/cmd/containerd@$CONTAINERD_VERSION" \
        "$module/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" "$module/cmd/ctr@$CONTAINERD_VERSION"
}

start=$(date +%s)
for part in ${*:-kubernetes openapi coredns helm netpol containerd}; do
    case $part in
    kubernetes) build_kubernetes ;;
    openapi) keep_openapi ;;
    coredns) build_tool coredns "github.com/coredns/coredns@$COREDNS_VERSION" "$COREDNS_BIN" ;;
    helm) build_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$HELM_BIN" ;;
    # Its main package is the module's cmd/ directory, so go install names the binary "cmd".
    netpol) build_tool kube-network-policies \
        "sigs.k8s.io/kube-network-policies/cmd@$NETPOL_VERSION" "$NETPOL_BIN" cmd ;;
    containerd) build_containerd ;;
    *)
        echo "ERROR: unknown part '$part' (kubernetes, openapi, coredns, helm, netpol or containerd)" >&2
        exit 2
        ;;
    esac
done
log "done in $(($(date +%s) - start)) s; binaries under $CACHE_ROOT"
