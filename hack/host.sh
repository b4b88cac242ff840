#!/usr/bin/env bash
# Host preparation for the local cluster: packages, networking, component configs and the
# images no registry can give us. Sourced by up.sh and load-images.sh.
set -euo pipefail

HOST_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack docker.io
    debootstrap curl bind9-dnsutils iproute2 gcc libc6-dev)

host_packages() {
    local missing=()
    for pkg in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return
    printf '==> [host] installing %s\n' "${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

host_dockerd() {
    docker info >/dev/null 2>&1 && return
    printf '==> [host] starting dockerd (log /var/log/hello-mtls-dockerd.log)\n' >&2
    # dockerd outlives this script: it must inherit no descriptor but 0-2, or the lock of a
    # caller's `flock FILE make ...` stays held for as long as dockerd runs.
    (
        for fd in $(ls /proc/$BASHPID/fd); do
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec setsid dockerd >>/var/log/hello-mtls-dockerd.log 2>&1 </dev/null
    ) &
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || {
            echo "ERROR: dockerd did not start; see /var/log/hello-mtls-dockerd.log" >&2
            exit 1
        }
        sleep 1
    done
}

host_network() {
    ip link show "$NODE_IFACE" >/dev/null 2>&1 || ip link add "$NODE_IFACE" type bridge
    ip addr show dev "$NODE_IFACE" | grep -q "inet $NODE_IP/" ||
        ip addr add "$NODE_IP/32" dev "$NODE_IFACE"
    ip link set "$NODE_IFACE" up
    sysctl -qw net.ipv4.ip_forward=1
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
    mount --make-rshared /
    # dockerd sets the FORWARD policy to DROP; let pod traffic through (own chain, so
    # cluster-down removes exactly what we added).
    iptables -N HELLO-MTLS-FORWARD 2>/dev/null || iptables -F HELLO-MTLS-FORWARD
    iptables -A HELLO-MTLS-FORWARD -s "$POD_CIDR" -j ACCEPT
    iptables -A HELLO-MTLS-FORWARD -d "$POD_CIDR" -j ACCEPT
    iptables -C FORWARD -j HELLO-MTLS-FORWARD 2>/dev/null || iptables -I FORWARD -j HELLO-MTLS-FORWARD
    mkdir -p /etc/cni/net.d
    cat >/etc/cni/net.d/10-hello-mtls.conflist <<EOF
{"cniVersion": "1.0.0", "name": "hello-mtls",
 "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$STATE/cni"}},
  {"type": "portmap", "capabilities": {"portMappings": true},
   "externalSetMarkChain": "KUBE-MARK-MASQ"}]}
EOF
}

host_netpol_divert() {
    # kube-network-policies diverts new connections to its nfqueue with the nftables `queue`
    # expression, which this kernel lacks (CONFIG_NFT_QUEUE unset; its nftables batch fails).
    # The xtables NFQUEUE target is built in, so the same divert is made here: every new
    # connection to or from a pod, except the node's own root traffic (kubelet probes), as the
    # enforcer's chain does, in POSTROUTING (after DNAT, before SNAT). The enforcer decides in
    # user space as it would with its own rules. --queue-bypass: while it is not listening,
    # traffic flows unfiltered rather than the whole pod network going dark.
    # One iptables-restore transaction, so re-running cluster-up never leaves the chain empty.
    iptables-restore --noflush <<EOF
*mangle
:HELLO-MTLS-NETPOL - [0:0]
-A HELLO-MTLS-NETPOL -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
-A HELLO-MTLS-NETPOL -m owner --uid-owner 0 -j RETURN
-A HELLO-MTLS-NETPOL -s $POD_CIDR -j NFQUEUE --queue-num $NETPOL_QUEUE --queue-bypass
-A HELLO-MTLS-NETPOL -d $POD_CIDR -j NFQUEUE --queue-num $NETPOL_QUEUE --queue-bypass
COMMIT
EOF
    iptables -t mangle -C POSTROUTING -j HELLO-MTLS-NETPOL 2>/dev/null ||
        iptables -t mangle -A POSTROUTING -j HELLO-MTLS-NETPOL
}

host_containerd_config() {
    mkdir -p "$STATE/containerd"
    # restrict_oom_score_adj: this VM has no CAP_SYS_RESOURCE, so negative oom_score_adj writes
    # (pause: -998, Guaranteed pods: -997) fail unless containerd clamps them.
    if [ -n "$CONTAINERD_VERSION" ]; then
        # containerd 2.x (config version 4: the sockets are plugin settings, and an unknown
        # top-level [grpc] would silently mean the default socket, which dockerd adopts), with
        # its own shim rather than Debian's on PATH.
        cat >"$STATE/containerd/config.toml" <<EOF
version = 4
root = "$STATE/containerd/root"
state = "$STATE/containerd/run"
[plugins."io.containerd.server.v1.grpc"]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = "$CONTAINERD_BIN/containerd-shim-runc-v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "/etc/cni/net.d"
EOF
        return
    fi
    cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/run"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
EOF
}

load_image() {  # image: copy it from docker into the cluster's containerd
    docker save "$1" | "$CONTAINERD_BIN/ctr" --address="$CONTAINERD_SOCK" -n k8s.io images import - >/dev/null
}

host_images() {
    host_dockerd
    local rootfs
    if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
        printf '==> [host] building %s from pause.c\n' "$PAUSE_IMAGE" >&2
        rootfs=$(mktemp -d)
        gcc -Os -static -DVERSION=3.10 -o "$rootfs/pause" "$K8S_BIN/pause.c"
        tar -C "$rootfs" -c . | docker import --change 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
        rm -rf "$rootfs"
    fi
    binary_image "$COREDNS_IMAGE" "$COREDNS_BIN/coredns"
    binary_image "$NETPOL_IMAGE" "$NETPOL_BIN/kube-network-policies"
    load_image "$PAUSE_IMAGE"
    load_image "$COREDNS_IMAGE"
    load_image "$NETPOL_IMAGE"
}

binary_image() {  # image binary: an image holding only the (static) binary, as its entrypoint
    local image=$1 binary=$2 rootfs name
    docker image inspect "$image" >/dev/null 2>&1 && return
    printf '==> [host] packaging %s\n' "$image" >&2
    rootfs=$(mktemp -d)
    name=$(basename "$binary")
    cp "$binary" "$rootfs/$name"
    tar -C "$rootfs" -c . |
        docker import --change "ENTRYPOINT [\"/$name\"]" - "$image" >/dev/null
    rm -rf "$rootfs"
}

host_kubelet_config() {
    mkdir -p "$STATE/kubelet"
    # Pods that do not use cluster DNS get a resolver that answers nothing: no DNS query may
    # leave the machine.
    echo "nameserver 127.0.0.1" >"$STATE/kubelet/resolv.conf"
    cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
address: $NODE_IP
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
clusterDNS: [$DNS_SERVICE_IP]
resolvConf: $STATE/kubelet/resolv.conf
oomScoreAdj: 0
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 10s
EOF
}

host_kube_proxy_config() {
    cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
oomScoreAdj: 0
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}
