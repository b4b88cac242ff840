"""Who a certificate names: a workload's SPIFFE ID, and the roles the CA's own callers hold.

A workload is ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``; the operator
(`PROVISIONER`) and an administrator (`ADMIN`) are ``spiffe://<trust domain>/hello-mtls/<role>/
<name>``, a path no workload's can take. Shared by the CA (what it signs into a certificate and
whom it lets call what) and the operator.
"""

from __future__ import annotations

from mtls_contract import name_rules

__all__ = ["ADMIN", "PROVISIONER", "ROLES", "provisioner_id", "role_of", "spiffe_id"]

PROVISIONER = "provisioner"
"""The operator's role: ``POST /sign`` for a namespace, and moving on a root rotation."""
ADMIN = "admin"
"""An administrator's role: everything the CA service does, rotation steps included."""
ROLES = (PROVISIONER, ADMIN)


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The workload's SPIFFE ID, ``spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>``.

    Raises:
        ValueError: if a part is not a valid trust domain, namespace or service account name.
    """
    if not trust_domain or not name_rules.has_dns_characters(trust_domain) or ".." in trust_domain:
        raise ValueError(f"trust domain '{trust_domain}' is not a lower-case DNS name")
    name_rules.check_namespace(namespace)
    if (
        not service_account
        or len(service_account) > name_rules.MAX_NAME_LENGTH
        or not all(name_rules.is_label(label) for label in service_account.split("."))
    ):
        raise ValueError(f"service account '{service_account}' is not a valid name")
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def provisioner_id(trust_domain: str, name: str, *, role: str = PROVISIONER) -> str:
    """The URI SAN of a credential for the CA service: ``spiffe://<td>/hello-mtls/<role>/<name>``.

    ``role`` is `PROVISIONER` (the operator's) or `ADMIN`. The path cannot collide with a
    workload's ``/ns/<ns>/sa/<sa>``.

    Raises:
        ValueError: if ``name`` is not one DNS label or ``role`` is not one of `ROLES`.
    """
    if len(name) > name_rules.MAX_LABEL_LENGTH or not name_rules.is_label(name):
        raise ValueError(f"provisioner name '{name}' is not a lower-case DNS label")
    if role not in ROLES:
        raise ValueError(f"role '{role}' is not one of {', '.join(ROLES)}")
    spiffe_id(trust_domain, "x", "x")  # validates the trust domain
    return f"spiffe://{trust_domain}/hello-mtls/{role}/{name}"


def role_of(trust_domain: str, uri: str) -> str | None:
    """The role of a `provisioner_id` URI of ``trust_domain``; None for any other URI."""
    prefix = f"spiffe://{trust_domain}/hello-mtls/"
    role, _, name = uri.removeprefix(prefix).partition("/")
    if not uri.startswith(prefix) or role not in ROLES:
        return None
    return role if name_rules.is_label(name) and len(name) <= name_rules.MAX_LABEL_LENGTH else None
