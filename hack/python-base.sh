#!/usr/bin/env bash
# Build the local Python base image: a debootstrap of Debian bookworm with python3, venv and
# pip, trusting the host's CA bundle (package downloads in builds go through an intercepting
# proxy). Used as PYTHON_IMAGE for the three Dockerfiles, because no base image can be pulled.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=hack/host.sh
source "$here/host.sh"

IMAGE=${PYTHON_BASE_IMAGE:-hello-mtls/python-base:bookworm}

host_packages
host_dockerd
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    printf '==> [python-base] %s exists\n' "$IMAGE" >&2
    exit 0
fi
# The host's own Debian archive (its apt sources), so this works behind any mirror or proxy;
# DEBIAN_MIRROR overrides it.
if [ -n "${DEBIAN_MIRROR:-}" ]; then
    MIRROR=$DEBIAN_MIRROR
else
    MIRROR=$(python3 "$here/debian_mirror.py")
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
printf '==> [python-base] debootstrap bookworm from %s (a few minutes)\n' "$MIRROR" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$MIRROR" >/var/log/hello-mtls-debootstrap.log 2>&1 || {
    echo "ERROR: debootstrap failed; see /var/log/hello-mtls-debootstrap.log" >&2
    exit 1
}
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/share/ca-certificates/host-bundle.crt"
chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
printf '==> [python-base] importing as %s\n' "$IMAGE" >&2
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8 SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
printf '==> [python-base] done\n' >&2
