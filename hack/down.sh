#!/usr/bin/env bash
# Stop the local cluster started by up.sh (by recorded PID, never by name) and remove what it
# added to the host: pod sandboxes, mounts, the CNI bridge, iptables chains, the node interface
# and its state directory. The build cache is kept.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/versions.sh
source "$here/versions.sh"

step() { printf '==> [cluster-down] %s\n' "$*" >&2; }

stop() {  # name: SIGTERM, then SIGKILL after 20 s
    local pidfile=$PIDS/$1 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if component_running "$1"; then
        step "stopping $1 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

stop kubelet
stop kube-proxy
if [ -S "$CONTAINERD_SOCK" ]; then
    step "removing pod containers"
    ctr="$CONTAINERD_BIN/ctr --address=$CONTAINERD_SOCK -n k8s.io"
    for task in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks kill -s SIGKILL "$task" >/dev/null 2>&1; done
    sleep 1
    for task in $($ctr tasks ls -q 2>/dev/null); do $ctr tasks rm -f "$task" >/dev/null 2>&1; done
    for c in $($ctr containers ls -q 2>/dev/null); do $ctr containers rm "$c" >/dev/null 2>&1; done
fi
stop containerd
stop kube-scheduler
stop kube-controller-manager
stop kube-apiserver
stop etcd

step "unmounting pod volumes and container state"
for root in /var/lib/kubelet "$STATE"; do
    awk -v r="$root" '$2 ~ "^"r {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
done
for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns delete "$ns"; done

step "removing network setup"
ip link show cni0 >/dev/null 2>&1 && ip link delete cni0
ip link show "$NODE_IFACE" >/dev/null 2>&1 && ip link delete "$NODE_IFACE"
iptables -D FORWARD -j HELLO-MTLS-FORWARD 2>/dev/null
iptables -F HELLO-MTLS-FORWARD 2>/dev/null && iptables -X HELLO-MTLS-FORWARD 2>/dev/null
for table in filter nat mangle; do
    iptables -t "$table" -S 2>/dev/null | awk '/^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*(KUBE-|CNI-)/' |
        sed 's/^-A/-D/' | while read -r rule; do eval "iptables -t $table $rule" 2>/dev/null; done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/{print $2}'); do
        iptables -t "$table" -F "$chain" 2>/dev/null
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N (KUBE-|CNI-)/{print $2}'); do
        iptables -t "$table" -X "$chain" 2>/dev/null
    done
done
iptables -t mangle -D POSTROUTING -j HELLO-MTLS-NETPOL 2>/dev/null
iptables -t mangle -F HELLO-MTLS-NETPOL 2>/dev/null && iptables -t mangle -X HELLO-MTLS-NETPOL 2>/dev/null
rm -f /etc/cni/net.d/10-hello-mtls.conflist
rm -rf "$STATE" /var/lib/kubelet /var/log/pods /var/log/containers
step "done (build cache kept in $CACHE_ROOT)"
