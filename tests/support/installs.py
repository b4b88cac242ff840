"""What an install of the product needs from the cluster besides the chart, for the shared install
(tests/e2e/conftest.py) and the modules that install it themselves (``own_install``: the upgrade,
the upstream root): its images on the nodes, the CA's state volume on a cluster that cannot
provision one (the local cluster), and for the latter Helm, the check that the cluster has no
other install, and the uninstall."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from support.cluster_api import PRODUCT_NAMESPACE, RELEASE, ROOT, kubectl, kubectl_json, log

CA_STATE_CLAIM = "hello-mtls-ca-state"
LOCAL_VOLUME = "hello-mtls-e2e-ca-state"


def load_images(images: list[str]) -> None:
    """Make ``images`` available to the cluster's nodes with ``E2E_IMAGE_LOADER`` (conftest's
    docstring); without it they are assumed to be there."""
    loader = os.environ.get("E2E_IMAGE_LOADER")
    if not loader:
        return
    log(f"loading images with {loader}")
    subprocess.run([*shlex.split(loader), *images], check=True, cwd=ROOT, timeout=900)


def local_volume(namespace: str) -> str:
    """The name of the PersistentVolume `provide_ca_volume` makes for the install in
    ``namespace`` (one per install: two installs may run side by side)."""
    return LOCAL_VOLUME if namespace == PRODUCT_NAMESPACE else f"{namespace}-e2e-ca-state"


def provide_ca_volume(namespace: str = PRODUCT_NAMESPACE) -> Path | None:
    """A ``local`` PersistentVolume pre-bound to the CA's state claim of the install in
    ``namespace``, on a cluster that cannot provision one; returns its directory (None: the
    cluster provisions volumes itself)."""
    classes = kubectl_json("get", "storageclasses")["items"]
    default = next(
        (
            c
            for c in classes
            if (c["metadata"].get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class"
            )
            == "true"
        ),
        None,
    )
    if default is not None and default.get("provisioner") != "kubernetes.io/no-provisioner":
        return None
    root = os.environ.get("E2E_LOCAL_VOLUMES")
    nodes = kubectl_json("get", "nodes")["items"]
    if not root or len(nodes) != 1:
        raise pytest.UsageError(
            "the cluster provisions no volumes (no default StorageClass with a provisioner): "
            "give it one, or set E2E_LOCAL_VOLUMES to a directory on its only node"
        )
    directory = Path(root) / f"ca-state-{secrets.token_hex(3)}"
    directory.mkdir(parents=True)
    hostname = nodes[0]["metadata"]["labels"]["kubernetes.io/hostname"]
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": local_volume(namespace)},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": default["metadata"]["name"] if default else "",
            "claimRef": {"namespace": namespace, "name": CA_STATE_CLAIM},
            "local": {"path": str(directory)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [hostname],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }
    name = local_volume(namespace)
    log(f"the cluster provisions no volumes: local PersistentVolume {name} at {directory}")
    kubectl("delete", "pv", name, "--ignore-not-found", "--wait=true", timeout=120)
    kubectl("create", "-f", "-", stdin=json.dumps(volume))
    return directory


def remove_ca_volume(directory: Path, namespace: str = PRODUCT_NAMESPACE) -> None:
    kubectl("delete", "pv", local_volume(namespace), "--ignore-not-found", check=False, timeout=120)
    shutil.rmtree(directory, ignore_errors=True)


# A module that installs the product itself (``own_install``, tests/support/sharing.py).
HELM = os.environ.get("HELM", "helm")


def helm_run(*args: str) -> None:
    """``helm ARGS`` (``HELM``), logged."""
    log(f"{HELM} {' '.join(args)}")
    subprocess.run([HELM, *args], check=True, cwd=ROOT, timeout=420)


def refuse_another_install() -> None:
    """Fail unless the cluster is free of installs: one per cluster is all there can be."""
    if kubectl("get", "namespace", PRODUCT_NAMESPACE, "--ignore-not-found").strip():
        pytest.fail(
            f"namespace {PRODUCT_NAMESPACE} exists: this module installs the product itself and"
            " cannot run beside another install (helm uninstall it first)"
        )


def uninstall_own(namespaces: list[str]) -> None:
    """Uninstall the module's release, delete its ``namespaces`` and the release namespace."""
    log("uninstalling the module's own release")
    subprocess.run(
        [HELM, "uninstall", RELEASE, "-n", PRODUCT_NAMESPACE, "--wait", "--timeout", "3m"],
        check=False,
        timeout=240,
    )
    for namespace in [*namespaces, PRODUCT_NAMESPACE]:
        kubectl(
            "delete",
            "namespace",
            namespace,
            "--ignore-not-found",
            "--wait=true",
            check=False,
            timeout=240,
        )
