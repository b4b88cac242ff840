#!/usr/bin/env bash
# Certificates and kubeconfigs of the local cluster (one self-signed CA, openssl only).
# Sourced by up.sh; every file is made once and kept across restarts.
set -euo pipefail

pki_cert() {  # name subject eku [san]
    local name=$1 subject=$2 eku=$3 san=${4:-} dir=$STATE/pki
    [ -f "$dir/$name.crt" ] && return
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$dir/$name.ext"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 365 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr" "$dir/$name.ext"
    chmod 600 "$dir/$name.key"
}

pki_kubeconfig() {  # name cert-name
    local name=$1 cert=$2 file=$STATE/$1.kubeconfig
    [ -f "$file" ] && return
    "$K8S_BIN/kubectl" config set-cluster local --kubeconfig="$file" --embed-certs \
        --certificate-authority="$STATE/pki/ca.crt" --server="https://$NODE_IP:6443" >/dev/null
    "$K8S_BIN/kubectl" config set-credentials "$name" --kubeconfig="$file" --embed-certs \
        --client-certificate="$STATE/pki/$cert.crt" --client-key="$STATE/pki/$cert.key" >/dev/null
    "$K8S_BIN/kubectl" config set-context local --kubeconfig="$file" --cluster=local \
        --user="$name" >/dev/null
    "$K8S_BIN/kubectl" config use-context local --kubeconfig="$file" >/dev/null
    chmod 600 "$file"
}

pki_all() {
    local dir=$STATE/pki
    mkdir -p "$dir"
    chmod 700 "$dir"
    if [ ! -f "$dir/ca.crt" ]; then
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=hello-mtls-local-cluster-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        chmod 600 "$dir/ca.key"
    fi
    pki_cert apiserver "/CN=kube-apiserver" serverAuth \
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$APISERVER_SERVICE_IP"
    pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    pki_cert admin "/O=system:masters/CN=kubernetes-admin" clientAuth
    pki_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
    pki_cert scheduler "/CN=system:kube-scheduler" clientAuth
    pki_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
    pki_cert kube-proxy "/CN=system:kube-proxy" clientAuth
    if [ ! -f "$dir/sa.key" ]; then
        openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
        openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
        chmod 600 "$dir/sa.key"
    fi
    pki_kubeconfig admin admin
    pki_kubeconfig controller-manager controller-manager
    pki_kubeconfig scheduler scheduler
    pki_kubeconfig kubelet kubelet
    pki_kubeconfig kube-proxy kube-proxy
}
