"""Write k8s/ from the chart: ``helm template`` with the default values, split into numbered files.

Run by ``make manifests``; ``make lint`` checks that k8s/ is what this writes (``--check``), so the
chart stays the one source of truth. Usage: ``python charts/render_k8s.py [--helm PATH] [--check]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "hello-mtls"
OUT = ROOT / "k8s"
NAMESPACE = "hello-mtls"

# Numbered file → (header, the chart templates it holds, in apply order).
FILES = {
    "00-namespace.yaml": (
        "The namespace of the CA and the operator (hello-mtls). Needs: create namespaces.",
        ["namespace.yaml"],
    ),
    "10-ca.yaml": (
        "The CA service: ServiceAccount, a Role limited to the operator's provisioner Secret, the\n"
        "state volume claim only the CA mounts, the Service hello-mtls-ca (443 -> 8443 read-only,\n"
        "8444 signing), the NetworkPolicy (8444 for the operator only), the Deployment, and\n"
        "the Role hello-mtls-ca-admin an admin is bound to for hello-mtls revoke/rotate-root.",
        [
            "ca-serviceaccount.yaml",
            "ca-rbac.yaml",
            "ca-admin-rbac.yaml",
            "ca-persistentvolumeclaim.yaml",
            "ca-service.yaml",
            "ca-networkpolicy.yaml",
            "ca-deployment.yaml",
            "ca-signer-deployment.yaml",
            "ca-signer-poddisruptionbudget.yaml",
        ],
    ),
    "20-operator.yaml": (
        "The operator: ServiceAccount, ClusterRole (each rule says why) and its binding, the\n"
        "Role for its Lease, the ValidatingAdmissionPolicy limiting its writes, its\n"
        "NetworkPolicy, the Deployment (2 replicas, one leader elected by the Lease\n"
        "hello-mtls-operator) and its PodDisruptionBudget.",
        [
            "operator-serviceaccount.yaml",
            "operator-rbac.yaml",
            "operator-validatingadmissionpolicy.yaml",
            "operator-networkpolicy.yaml",
            "operator-deployment.yaml",
            "operator-poddisruptionbudget.yaml",
        ],
    ),
    "25-names-policy.yaml": (
        "The ValidatingAdmissionPolicy hello-mtls-names and its binding: the API server refuses\n"
        "pods and workloads whose hello-mtls.dev/* annotations break the name rules (Kubernetes\n"
        "1.30+; docs/admission.md). Needs: create cluster-scoped admission policies.",
        ["admission-names-policy.yaml"],
    ),
    "26-wiring-policy.yaml": (
        "The MutatingAdmissionPolicy hello-mtls-wiring and its binding: the API server adds the\n"
        "Secret volume and a read-only mount to every annotated pod it creates (Kubernetes\n"
        "1.36+; skip this file on older clusters and wire pods by hand; docs/admission.md).\n"
        "Needs: create cluster-scoped admission policies.",
        ["admission-wiring-policy.yaml"],
    ),
    "30-examples.yaml": (
        "The example hello-mtls server (Deployment + Service) and client (Deployment), annotated\n"
        "with hello-mtls.dev/name and mounting their Secrets at /var/run/hello-mtls.",
        ["examples-server.yaml", "examples-client.yaml"],
    ),
}


def render(helm: str) -> dict[str, str]:
    """The content of every k8s/ file, from ``helm template``."""
    output = subprocess.run(
        [
            helm,
            "template",
            "hello-mtls",
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--set",
            "createNamespace=true",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    documents: dict[str, list[str]] = {}
    for chunk in output.split("\n---\n"):
        lines = chunk.strip("-\n").splitlines()
        source = next((ln for ln in lines if ln.startswith("# Source: ")), None)
        if source is None:
            continue
        template = source.rsplit("/", 1)[1]
        body = "\n".join(ln for ln in lines if ln is not source).strip("\n")
        documents.setdefault(template, []).append(body)
    files = {}
    for name, (header, templates) in FILES.items():
        comment = "\n".join(f"# {line}" for line in header.splitlines())
        generated = "# Generated from charts/hello-mtls by `make manifests`; do not edit."
        docs = [doc for t in templates for doc in documents.pop(t, [])]
        files[name] = f"{comment}\n{generated}\n---\n" + "\n---\n".join(docs) + "\n"
    if documents:
        raise SystemExit(f"templates not placed in any k8s/ file: {', '.join(documents)}")
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--helm", default="helm", help="the helm binary (default: helm)")
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = parser.parse_args()
    files = render(args.helm)
    drift = [
        n for n, text in files.items() if not (OUT / n).is_file() or (OUT / n).read_text() != text
    ]
    drift += sorted(p.name for p in OUT.glob("*.yaml") if p.name not in files)
    if args.check:
        for name in drift:
            print(f"k8s/{name} differs from the chart; run `make manifests`", file=sys.stderr)
        return 1 if drift else 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
        print(f"wrote k8s/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
