# Pinned versions and paths of the local cluster, and component_running; sourced by the other scripts.
# 1.37: MutatingAdmissionPolicy (GA in 1.36), PodCertificateRequest and ClusterTrustBundle (GA in
# 1.37). On these cgroup v1 VMs its kubelet runs with failCgroupV1: false (host.sh).
# K8S_VERSION=v1.33.13 still works, with Debian's containerd (the wiring policy needs 1.36+).
K8S_VERSION=${K8S_VERSION:-v1.37.2}
K8S_MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
# Kubernetes 1.35 and later support containerd 1.7/2.x only, and their kubelets are moving to the
# RuntimeConfig call only 2.x answers: they get a containerd built from the Go module proxy.
# Empty means Debian's containerd (1.6).
if [ "$K8S_MINOR" -ge 35 ]; then
    CONTAINERD_VERSION=${CONTAINERD_VERSION-v2.4.2}
else
    CONTAINERD_VERSION=${CONTAINERD_VERSION-}
fi
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
NETPOL_VERSION=${NETPOL_VERSION:-v0.8.0}

CACHE_ROOT=${HELLO_MTLS_CACHE:-/var/cache/hello-mtls}
K8S_BIN=$CACHE_ROOT/kubernetes-$K8S_VERSION/bin
COREDNS_BIN=$CACHE_ROOT/coredns-$COREDNS_VERSION/bin
HELM_BIN=$CACHE_ROOT/helm-$HELM_VERSION/bin
NETPOL_BIN=$CACHE_ROOT/kube-network-policies-$NETPOL_VERSION/bin
# containerd, ctr and containerd-shim-runc-v2 of CONTAINERD_VERSION (Debian's: /usr/bin).
CONTAINERD_BIN=/usr/bin
[ -z "$CONTAINERD_VERSION" ] || CONTAINERD_BIN=$CACHE_ROOT/containerd-$CONTAINERD_VERSION/bin
# The API's OpenAPI v2 document of K8S_VERSION (from the module zip): the offline schema check.
K8S_OPENAPI=$CACHE_ROOT/kubernetes-$K8S_VERSION/openapi/swagger.json

# Runtime layout: everything the running cluster owns lives under STATE.
STATE=${HELLO_MTLS_CLUSTER:-/var/lib/hello-mtls-cluster}
LOGS=${HELLO_MTLS_CLUSTER_LOGS:-/var/log/hello-mtls-cluster}
PIDS=$STATE/pids
KUBECONFIG_PATH=$STATE/admin.kubeconfig
CONTAINERD_SOCK=$STATE/containerd/run/containerd.sock

# The node's address lives on an (empty) bridge interface the cluster creates, so no cluster traffic
# ever targets the machine's own network.
NODE_IFACE=hellomtls0
NODE_IP=10.200.0.1
NODE_NAME=hello-mtls-node
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
APISERVER_SERVICE_IP=10.96.0.1
DNS_SERVICE_IP=10.96.0.10
PAUSE_IMAGE=registry.k8s.io/pause:3.10
COREDNS_IMAGE=hello-mtls/coredns:$COREDNS_VERSION
NETPOL_IMAGE=hello-mtls/kube-network-policies:$NETPOL_VERSION
NETPOL_QUEUE=98

component_running() {  # name: its PID file names a live process that is still that component
    # A stale file (after a reboot) may name a PID that now belongs to something else.
    local pid
    [ -f "$PIDS/$1" ] && pid=$(cat "$PIDS/$1") && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$1"
}

# The previous release, which the upgrade e2e installs and then upgrades (tests/e2e/test_upgrades.py,
# docs/upgrades.md): pinned by commit, so a clone without tags works; the tag is only its label
# and the images' tag. Its source and chart are cached by commit (previous-release.sh).
PREVIOUS_RELEASE=v0.2.0
PREVIOUS_COMMIT=de11d747b6e842228bb785fe18673d0ca442b1a1
PREVIOUS_SOURCE=$CACHE_ROOT/releases/$PREVIOUS_COMMIT/src
