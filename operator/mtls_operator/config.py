"""The operator's settings, read from ``HELLO_MTLS_*`` environment variables (set by the chart)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from mtls_contract import durations, name_rules
from mtls_operator.claims import Rules
from mtls_operator.federation import Source, parse_sources
from mtls_operator.scope import Scope
from mtls_operator.settings import Settings

__all__ = ["Config", "from_environment"]

_T = TypeVar("_T")
_DEFAULT_MINIMUM = durations.format_duration(durations.DEFAULT_MINIMUM)
_DEFAULT_MAXIMUM = durations.format_duration(durations.DEFAULT_MAXIMUM)
# A signer name is a domain, a slash and a path (the API server's rule, simplified).
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SIGNER_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})+/[\w.-]+")


@dataclass(frozen=True)
class Config:
    """Everything the operator needs to start."""

    ca_url: str
    provisioner_dir: str
    metrics_port: int
    max_workers: int
    settings: Settings
    pod_certificate_signer: str = ""
    """The signer name to answer PodCertificateRequests for; empty: the signer does not run."""
    pod_certificate_refresh_fraction: float = durations.RENEW_FRACTION
    """Where in a pod certificate's lifetime its beginRefreshAt lies."""
    ca_root_url: str = ""
    """Where ``POST /rotate-root`` goes: the root holder, when CA signer pods serve ``ca_url``;
    empty: ``ca_url``."""
    lease_namespace: str = "hello-mtls"
    """Where the Lease that elects the working replica lives (`leadership`): the operator's own
    namespace."""
    watch_namespaces: frozenset[str] = frozenset()
    """``operator.watchNamespaces`` (kopf is given them as ``--namespace``); empty: all."""
    federation: tuple[Source, ...] = ()
    """``federation.trustDomains``: the trust domains whose bundles every Secret carries."""

    @property
    def scope(self) -> Scope:
        """The namespaces this installation serves: the watched ones, never kube-system nor the
        operator's own."""
        return Scope(own=self.lease_namespace, watched=self.watch_namespaces)


def from_environment(environ: Mapping[str, str] = os.environ) -> Config:
    """Read the configuration; every variable is optional.

    ===================================  ==================================================
    ``HELLO_MTLS_CA_URL``                ``https://hello-mtls-ca.hello-mtls.svc:8444``
    ``HELLO_MTLS_CA_ROOT_URL``           empty (``POST /rotate-root`` to the CA URL); with
        CA signer pods the root holder's, ``https://hello-mtls-ca-root.hello-mtls.svc:8444``
    ``HELLO_MTLS_PROVISIONER_DIR``       ``/var/run/hello-mtls-provisioner``
    ``HELLO_MTLS_METRICS_PORT``          ``9090``
    ``HELLO_MTLS_MAX_WORKERS``           ``16`` (threads issuing and updating Secrets)
    ``HELLO_MTLS_CLUSTER_DOMAIN``        ``cluster.local``
    ``HELLO_MTLS_DEFAULT_DURATION``      ``24h``
    ``HELLO_MTLS_MIN_DURATION``          ``5m``  (as the CA's)
    ``HELLO_MTLS_MAX_DURATION``          ``30d`` (as the CA's)
    ``HELLO_MTLS_RENEW_FRACTION``        ``0.6667``
    ``HELLO_MTLS_RESYNC_SECONDS``        ``10``
    ``HELLO_MTLS_ROTATION_GRACE``        ``30s``
    ``HELLO_MTLS_EXTRA_ALLOWED``         ``{}``: JSON, namespace → list of names/``*.suffix``
    ``HELLO_MTLS_ALLOWED_IPS``           ``{}``: JSON, namespace → list of CIDRs (as the CA's)
    ``HELLO_MTLS_POD_CERTIFICATE_SIGNER``  empty (off); a signer name such as
                                         ``hello-mtls.dev/pod-certificate`` runs the signer
    ``HELLO_MTLS_POD_CERTIFICATE_REFRESH_FRACTION``  as ``HELLO_MTLS_RENEW_FRACTION``
    ``HELLO_MTLS_LEASE_NAMESPACE``       ``hello-mtls`` (the chart: the pod's own namespace)
    ``HELLO_MTLS_WATCH_NAMESPACES``      empty (all); comma-separated, as kopf's ``--namespace``
    ``HELLO_MTLS_FEDERATION``            ``[]``: JSON, the federated trust domains
                                         (`federation.parse_sources`)
    ===================================  ==================================================

    Raises:
        ValueError: naming the variable and what is wrong with it.
    """

    def get(name: str, default: str) -> str:
        return environ.get(f"HELLO_MTLS_{name}", "").strip() or default

    def parse(name: str, default: str, convert: Callable[[str], _T]) -> _T:
        try:
            return convert(get(name, default))
        except ValueError as error:
            raise ValueError(f"HELLO_MTLS_{name}: {error}") from None

    signer = get("POD_CERTIFICATE_SIGNER", "")
    if signer and not _SIGNER_NAME.fullmatch(signer):
        raise ValueError(
            f"HELLO_MTLS_POD_CERTIFICATE_SIGNER: '{signer}' is not a signer name like"
            " example.com/name"
        )
    extra = parse("EXTRA_ALLOWED", "{}", name_rules.parse_extra_allowed)
    rules = Rules(
        cluster_domain=get("CLUSTER_DOMAIN", name_rules.CLUSTER_DOMAIN),
        default_duration=parse("DEFAULT_DURATION", "24h", durations.parse_duration),
        minimum=parse("MIN_DURATION", _DEFAULT_MINIMUM, durations.parse_duration),
        maximum=parse("MAX_DURATION", _DEFAULT_MAXIMUM, durations.parse_duration),
        extra_allowed=extra,
        allowed_ips=parse("ALLOWED_IPS", "{}", name_rules.parse_allowed_ips),
        pod_certificates=bool(signer),
    )
    fraction = parse("RENEW_FRACTION", durations.RENEW_FRACTION_TEXT, durations.parse_fraction)
    refresh_fraction = parse(
        "POD_CERTIFICATE_REFRESH_FRACTION", str(fraction), durations.parse_fraction
    )
    return Config(
        ca_url=get("CA_URL", "https://hello-mtls-ca.hello-mtls.svc:8444"),
        ca_root_url=get("CA_ROOT_URL", ""),
        provisioner_dir=get("PROVISIONER_DIR", "/var/run/hello-mtls-provisioner"),
        metrics_port=parse("METRICS_PORT", "9090", int),
        max_workers=parse("MAX_WORKERS", "16", int),
        settings=Settings(
            rules=rules,
            renew_fraction=fraction,
            resync_seconds=parse("RESYNC_SECONDS", "10", float),
            rotation_grace=parse("ROTATION_GRACE", "30s", durations.parse_duration),
        ),
        pod_certificate_signer=signer,
        pod_certificate_refresh_fraction=refresh_fraction,
        lease_namespace=get("LEASE_NAMESPACE", "hello-mtls"),
        watch_namespaces=frozenset(
            n.strip() for n in get("WATCH_NAMESPACES", "").split(",") if n.strip()
        ),
        federation=parse("FEDERATION", "[]", parse_sources),
    )
