#!/usr/bin/env bash
# Start a real single-node Kubernetes as host processes: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (its own instance), kubelet, kube-proxy,
# the CNI bridge, CoreDNS and the NetworkPolicy enforcer. Idempotent: components already running
# are left alone.
#
# Order: host setup -> etcd -> apiserver -> controller-manager + scheduler -> containerd ->
# local images (pause, CoreDNS, enforcer) -> kubelet (node Ready) -> kube-proxy -> CoreDNS (DNS
# answers) -> kube-network-policies (listening on its nfqueue).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/versions.sh"
# shellcheck source=hack/pki.sh
source "$here/pki.sh"
# shellcheck source=hack/host.sh
source "$here/host.sh"

step() { printf '==> [cluster-up] %s\n' "$*" >&2; }

fail() {  # component message
    printf '\nERROR: %s: %s\n' "$1" "$2" >&2
    if [ -f "$LOGS/$1.log" ]; then
        printf -- '--- last lines of %s ---\n' "$LOGS/$1.log" >&2
        tail -n 25 "$LOGS/$1.log" >&2
    fi
    exit 1
}

launch() {  # name command...: start in its own session, log to $LOGS/name.log, record the PID
    local name=$1
    shift
    if component_running "$name"; then
        step "$name: already running (pid $(cat "$PIDS/$name"))"
        return
    fi
    step "$name: starting (log $LOGS/$name.log)"
    setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name"
}

wait_for() {  # component seconds description command...
    local name=$1 seconds=$2 what=$3
    shift 3
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        component_running "$name" || fail "$name" "exited while waiting for $what"
        [ "$SECONDS" -lt "$deadline" ] || fail "$name" "no $what after ${seconds}s"
        sleep 1
    done
    step "$name: $what"
}

kubectl() { "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG_PATH" "$@"; }

"$here/build.sh"
host_packages
mkdir -p "$STATE" "$LOGS" "$PIDS"
host_network
pki_all

launch etcd "$K8S_BIN/etcd" --name=hello-mtls --data-dir="$STATE/etcd" \
    --listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=hello-mtls=http://127.0.0.1:2380 --listen-metrics-urls=http://127.0.0.1:2381 \
    --unsafe-no-fsync
wait_for etcd 60 "healthy" curl -fsS http://127.0.0.1:2381/health

launch kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port=6443 \
    --service-cluster-ip-range="$SERVICE_CIDR" --client-ca-file="$STATE/pki/ca.crt" \
    --tls-cert-file="$STATE/pki/apiserver.crt" --tls-private-key-file="$STATE/pki/apiserver.key" \
    --kubelet-client-certificate="$STATE/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$STATE/pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$STATE/pki/sa.pub" \
    --service-account-signing-key-file="$STATE/pki/sa.key" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --allow-privileged=true --profiling=false
wait_for kube-apiserver 120 "ready" kubectl get --raw /readyz

launch kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --service-account-private-key-file="$STATE/pki/sa.key" --root-ca-file="$STATE/pki/ca.crt" \
    --cluster-signing-cert-file="$STATE/pki/ca.crt" --cluster-signing-key-file="$STATE/pki/ca.key" \
    --use-service-account-credentials --service-cluster-ip-range="$SERVICE_CIDR" \
    --leader-elect=false --bind-address=127.0.0.1
launch kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1

host_containerd_config
launch containerd "$CONTAINERD_BIN/containerd" --config="$STATE/containerd/config.toml"
wait_for containerd 60 "socket up" "$CONTAINERD_BIN/ctr" --address="$CONTAINERD_SOCK" version
host_images

host_kubelet_config
launch kubelet "$K8S_BIN/kubelet" --config="$STATE/kubelet/config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --node-ip="$NODE_IP" \
    --hostname-override="$NODE_NAME" --v=1
wait_for kubelet 120 "node Ready" \
    kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s

host_kube_proxy_config
launch kube-proxy "$K8S_BIN/kube-proxy" --config="$STATE/kube-proxy.yaml"

step "CoreDNS: applying (cluster.local only, no forwarding)"
sed -e "s|@IMAGE@|$COREDNS_IMAGE|" -e "s|@DNS_IP@|$DNS_SERVICE_IP|" "$here/coredns.yaml" |
    kubectl apply -f - >/dev/null
kubectl -n kube-system rollout status deployment/coredns --timeout=180s >&2 ||
    fail kubelet "CoreDNS did not become available (kubectl -n kube-system describe pod -l k8s-app=kube-dns)"
wait_for kube-proxy 60 "DNS answers kubernetes.default.svc.cluster.local" \
    dig +short +time=1 +tries=1 "@$DNS_SERVICE_IP" kubernetes.default.svc.cluster.local A

step "kube-network-policies: applying (NetworkPolicy enforcement)"
host_netpol_divert
sed -e "s|@IMAGE@|$NETPOL_IMAGE|" -e "s|@QUEUE@|$NETPOL_QUEUE|" "$here/network-policies.yaml" |
    kubectl apply -f - >/dev/null
kubectl -n kube-system rollout status daemonset/kube-network-policies --timeout=120s >&2 ||
    fail kubelet "kube-network-policies did not start (kubectl -n kube-system logs ds/kube-network-policies)"
wait_for kubelet 60 "NetworkPolicy enforcer listening on nfqueue $NETPOL_QUEUE" \
    grep -q "^ *$NETPOL_QUEUE " /proc/net/netfilter/nfnetlink_queue

step "ready: export KUBECONFIG=$KUBECONFIG_PATH (logs in $LOGS)"
