"""One table of good and bad hello-mtls annotation sets, run against both copies of the rules.

``tests/unit/test_name_cases.py`` runs every row through `mtls_operator.claims.parse_claim`
(always); ``tests/e2e/test_admission_names.py`` sends every row to a real API server as a pod and
a Deployment (server-side dry run) with the chart's ValidatingAdmissionPolicy installed. A bad row
the policy judges must be refused with exactly the operator's message; a row it cannot judge
(``policy=False``: xn-- labels, public suffixes, IPv6, IPs of a namespace with allowed networks)
must be admitted, so the policy never refuses what the operator accepts.

``{ns}`` in annotations and messages is the pod's namespace: a random one, or `ALLOWED_NAMESPACE`
for rows with ``allowed=True``, or the row's own ``namespace`` (namespaces named like a reserved
top-level domain: `RESERVED_NAMESPACES`). The e2e install gives `EXTRA_ALLOWED_NAMES` and
`ALLOWED_IPS`. Rows with ``pod_certificates`` set hold only for an install with the chart's
``podCertificates.enabled`` on (True) or off (False); the unit test runs the others both ways.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from mtls_contract import durations, name_rules
from mtls_contract.marks import (
    ANNOTATION_DURATION,
    ANNOTATION_MODE,
    ANNOTATION_NAME,
    ANNOTATION_SANS,
    ANNOTATION_SECRET,
)
from mtls_operator.claims import Rules

__all__ = [
    "ALLOWED_IPS",
    "ALLOWED_NAMESPACE",
    "CASES",
    "CEL_WHITE_SPACE",
    "EXTRA_ALLOWED_NAMES",
    "MINIMUM_DURATION",
    "PYTHON_WHITE_SPACE",
    "RESERVED_NAMESPACES",
    "Case",
    "rules",
]

# The e2e install lowers the minimum lifetime to this (scenario 4 asks for 3-minute certificates).
MINIMUM_DURATION = "1m"
ALLOWED_NAMESPACE = "e2e-admission-allowed"
# Top-level domains that resolve outside the cluster (name_rules.RESERVED_TLDS), as namespaces.
RESERVED_NAMESPACES = (
    *("localhost", "test", "invalid", "example"),  # RFC 6761
    *("local", "alt", "internal"),  # mDNS (RFC 6762), RFC 9476, ICANN's private-use TLD
    *("corp", "home", "lan", "intranet", "private"),  # private TLDs of organisations and routers
)
EXTRA_ALLOWED_NAMES = {
    ALLOWED_NAMESPACE: ["api.example.com", "*.internal.example.com"],
    "home": ["nas.home"],  # an admin gives one bare name back to a reserved namespace
}
ALLOWED_IPS = {ALLOWED_NAMESPACE: ["10.1.0.0/16"]}
# What CEL's trim() strips around a value (cel-go: Go's unicode.IsSpace, the Unicode White_Space
# property), and what str.isspace() calls white space: the same but for \x1c-\x1f.
CEL_WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
PYTHON_WHITE_SPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


@dataclass(frozen=True)
class Case:
    """Annotations, and the operator's error for them (None: accepted)."""

    id: str
    annotations: dict[str, str]
    error: str | None = None
    policy: bool = True
    """Whether the admission policy judges this row (False: it admits, the operator refuses)."""
    allowed: bool = False
    """Run in `ALLOWED_NAMESPACE` rather than a random namespace."""
    namespace: str | None = None
    """Run in this namespace (one of `RESERVED_NAMESPACES`, or ``arpa``), not a random one."""
    pod_certificates: bool | None = None
    """Holds only with pod-certificate mode enabled (True) or disabled (False); None: both."""

    def run_in(self, random: str) -> str:
        """The namespace this row runs in, given the random one of the run."""
        return self.namespace or (ALLOWED_NAMESPACE if self.allowed else random)

    def for_namespace(self, namespace: str) -> tuple[dict[str, str], str | None]:
        """The annotations and the expected error with ``{ns}`` filled in."""
        annotations = {k: v.replace("{ns}", namespace) for k, v in self.annotations.items()}
        error = None if self.error is None else self.error.replace("{ns}", namespace)
        return annotations, error


def rules(*, pod_certificates: bool) -> Rules:
    """The operator's rules as the e2e install configures them, with or without the signer."""
    return Rules(
        minimum=durations.parse_duration(MINIMUM_DURATION),
        extra_allowed=EXTRA_ALLOWED_NAMES,
        allowed_ips=name_rules.parse_allowed_ips(json.dumps(ALLOWED_IPS)),
        default_duration=datetime.timedelta(hours=24),
        pod_certificates=pod_certificates,
    )


_LONG_LABEL = "a" * 64
_LONG_NAME = ".".join(["a" * 60] * 5) + ".{ns}"

CASES = [
    # Accepted: every form of the namespace rule, SANs, durations, Secret names.
    Case("bare", {ANNOTATION_NAME: "web.{ns}"}),
    Case("svc", {ANNOTATION_NAME: "web.{ns}.svc"}),
    Case("cluster-domain", {ANNOTATION_NAME: "web.{ns}.svc.cluster.local"}),
    Case("pod-form", {ANNOTATION_NAME: "web.{ns}.pod.cluster.local"}),
    Case("spaces-trimmed", {ANNOTATION_NAME: "  web.{ns}.svc  "}),
    Case(
        "unicode-spaces-trimmed",
        {
            ANNOTATION_NAME: "\u00a0web.{ns}.svc\u2003",
            ANNOTATION_SANS: "\u3000api.{ns}\u205f,\x85web.{ns}",
            ANNOTATION_DURATION: "\u202f1h\u2009",
            ANNOTATION_SECRET: "\u1680web-cert\x0b",
            ANNOTATION_MODE: "\u2028secret\u2000",
        },
    ),
    Case(
        "sans",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_SANS: " api.{ns} , web.{ns}.svc.cluster.local,web.{ns}",
        },
    ),
    Case(
        "twenty-names-after-duplicates",
        {ANNOTATION_NAME: "web.{ns}", ANNOTATION_SANS: ",".join(["web.{ns}"] * 30)},
    ),
    Case("duration-1h30m", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "1h30m"}),
    Case("duration-zeros", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "0001d"}),
    Case("duration-minimum", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "60s"}),
    Case("duration-maximum", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "30d"}),
    Case("secret", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SECRET: "web-cert.v1"}),
    Case("mode-secret", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_MODE: " secret "}),
    Case("mode-empty", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_MODE: ""}),
    Case(
        "mode-pod-certificate",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_MODE: "pod-certificate"},
        pod_certificates=True,
    ),
    Case(
        "pod-certificate-shortest",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_SANS: "api.{ns}",
            ANNOTATION_MODE: " pod-certificate ",
            ANNOTATION_DURATION: "3600s",
        },
        pod_certificates=True,
    ),
    Case(
        "pod-certificate-ca-maximum",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_MODE: "pod-certificate",
            ANNOTATION_DURATION: "30d",
        },
        pod_certificates=True,
    ),
    Case("xn-label", {ANNOTATION_NAME: "xn--bcher-kva.{ns}.svc"}),
    Case("allowed-exact", {ANNOTATION_NAME: "api.example.com"}, allowed=True),
    Case(
        "allowed-wildcard",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "x.internal.example.com"},
        allowed=True,
    ),
    Case(
        "allowed-ip", {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "10.1.2.3"}, allowed=True
    ),
    Case(
        "reserved-tld-cluster-forms",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_SANS: "web.{ns}.svc.cluster.local,web.{ns}.pod.cluster.local",
        },
        namespace="local",
    ),
    Case(
        "reserved-tld-allowed-exact",
        {ANNOTATION_NAME: "nas.{ns}", ANNOTATION_SANS: "nas.{ns}.svc"},
        namespace="home",
    ),
    # Refused by the policy with the operator's message.
    Case("empty-name", {ANNOTATION_NAME: " "}, "hello-mtls.dev/name: empty name"),
    Case(
        "name-padded-x1f",
        {ANNOTATION_NAME: "web.{ns}.svc\x1f"},
        "hello-mtls.dev/name: name 'web.{ns}.svc\x1f' may only contain a-z, 0-9, '-' and '.'",
    ),
    Case(
        "other-namespace",
        {ANNOTATION_NAME: "db.other.svc"},
        "hello-mtls.dev/name: name 'db.other.svc' is not under namespace '{ns}'",
    ),
    Case(
        "kube-system",
        {ANNOTATION_NAME: "thief.kube-system.svc"},
        "hello-mtls.dev/name: name 'thief.kube-system.svc' is not under namespace '{ns}'",
    ),
    Case(
        "two-labels",
        {ANNOTATION_NAME: "a.b.{ns}.svc"},
        "hello-mtls.dev/name: name 'a.b.{ns}.svc' is not under namespace '{ns}'",
    ),
    Case(
        "namespace-itself",
        {ANNOTATION_NAME: "{ns}.svc"},
        "hello-mtls.dev/name: name '{ns}.svc' is not under namespace '{ns}'",
    ),
    Case(
        "wildcard",
        {ANNOTATION_NAME: "*.{ns}.svc"},
        "hello-mtls.dev/name: wildcard name '*.{ns}.svc' is not allowed",
    ),
    Case(
        "upper-case",
        {ANNOTATION_NAME: "Web.{ns}.svc"},
        "hello-mtls.dev/name: name 'Web.{ns}.svc' must be lower case",
    ),
    Case(
        "bad-characters",
        {ANNOTATION_NAME: "web_1.{ns}.svc"},
        "hello-mtls.dev/name: name 'web_1.{ns}.svc' may only contain a-z, 0-9, '-' and '.'",
    ),
    Case(
        "not-ascii",
        {ANNOTATION_NAME: "wéb.{ns}.svc"},
        "hello-mtls.dev/name: name 'wéb.{ns}.svc' is not ASCII; give international names as"
        " xn-- labels",
    ),
    Case(
        "colon-not-an-ip",
        {ANNOTATION_NAME: "web:8443.{ns}.svc"},
        "hello-mtls.dev/name: name 'web:8443.{ns}.svc' may only contain a-z, 0-9, '-' and '.'",
    ),
    Case(
        "trailing-dot",
        {ANNOTATION_NAME: "web.{ns}.svc."},
        "hello-mtls.dev/name: name 'web.{ns}.svc.' must not end with a dot",
    ),
    Case(
        "empty-label",
        {ANNOTATION_NAME: "web..{ns}.svc"},
        "hello-mtls.dev/name: name 'web..{ns}.svc' has an empty label",
    ),
    Case(
        "hyphen-label",
        {ANNOTATION_NAME: "-web.{ns}.svc"},
        "hello-mtls.dev/name: name '-web.{ns}.svc' has a label that starts or ends with '-'",
    ),
    Case(
        "long-label",
        {ANNOTATION_NAME: _LONG_LABEL + ".{ns}.svc"},
        f"hello-mtls.dev/name: name '{_LONG_LABEL[:60]}...' has a label longer than 63 characters",
    ),
    Case(
        "long-name",
        {ANNOTATION_NAME: _LONG_NAME},
        f"hello-mtls.dev/name: name '{_LONG_NAME[:60]}...' is longer than 253 characters",
    ),
    Case(
        "reserved-label",
        {ANNOTATION_NAME: "ab--c.{ns}.svc"},
        "hello-mtls.dev/name: name 'ab--c.{ns}.svc' has a reserved label 'ab--c'",
    ),
    Case(
        "numeric-tld",
        {ANNOTATION_NAME: "web.{ns}.123"},
        "hello-mtls.dev/name: name 'web.{ns}.123' is neither a DNS name nor an IP address",
    ),
    Case(
        "name-is-ip",
        {ANNOTATION_NAME: "10.1.2.3"},
        "hello-mtls.dev/name: '10.1.2.3' is an IP address; the name must be a DNS name",
    ),
    Case(
        "name-unspecified-ip",
        {ANNOTATION_NAME: "0.0.0.0"},
        "hello-mtls.dev/name: IP address '0.0.0.0' cannot identify a workload",
    ),
    Case(
        "san-other-namespace",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "api.{ns},api.other"},
        "hello-mtls.dev/sans: name 'api.other' is not under namespace '{ns}'",
    ),
    Case(
        "san-syntax-before-namespace",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "api.other,Bad.{ns}"},
        "hello-mtls.dev/sans: name 'Bad.{ns}' must be lower case",
    ),
    Case(
        "san-empty",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "a.{ns},,b.{ns}"},
        "hello-mtls.dev/sans: empty name",
    ),
    Case(
        "san-padded-x1c",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "\x1capi.{ns}"},
        "hello-mtls.dev/sans: name '\x1capi.{ns}' may only contain a-z, 0-9, '-' and '.'",
    ),
    Case(
        "san-wildcard",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "*.{ns}"},
        "hello-mtls.dev/sans: wildcard name '*.{ns}' is not allowed",
    ),
    Case(
        "san-ip-not-allowed",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "10.96.0.1"},
        "hello-mtls.dev/sans: IP address '10.96.0.1' is not allowed for namespace '{ns}'",
    ),
    Case(
        "san-multicast",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "224.0.0.1"},
        "hello-mtls.dev/sans: IP address '224.0.0.1' cannot identify a workload",
    ),
    Case(
        "too-many-names",
        {ANNOTATION_NAME: "web.{ns}", ANNOTATION_SANS: ",".join(f"a{i}.{{ns}}" for i in range(20))},
        "hello-mtls.dev/sans: 21 names requested; at most 20 are allowed",
    ),
    Case(
        "duration-word",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "forever"},
        "hello-mtls.dev/duration: duration 'forever' is not like 90m, 24h, 1h30m or 30s",
    ),
    Case(
        "duration-order",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "30m1h"},
        "hello-mtls.dev/duration: duration '30m1h' is not like 90m, 24h, 1h30m or 30s",
    ),
    Case(
        "duration-empty",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: " "},
        "hello-mtls.dev/duration: duration '' is not like 90m, 24h, 1h30m or 30s",
    ),
    Case(
        "duration-zero",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "0h0m"},
        "hello-mtls.dev/duration: duration '0h0m' must be longer than zero",
    ),
    Case(
        "duration-below",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "59s"},
        "hello-mtls.dev/duration: duration 59s is below the CA minimum of 1m",
    ),
    Case(
        "duration-above",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "720h1s"},
        "hello-mtls.dev/duration: duration 30d1s is above the CA maximum of 30d",
    ),
    Case(
        "duration-overflow",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "1000000000d"},
        "hello-mtls.dev/duration: duration '1000000000d' is too long",
    ),
    Case(
        "duration-huge",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "99999999999999999999d"},
        "hello-mtls.dev/duration: duration '99999999999999999999d' is too long",
    ),
    Case(
        "duration-long-text",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "0" * 40 + "1h"},
        "hello-mtls.dev/duration: duration '" + "0" * 32 + "...' is too long",
    ),
    Case(
        "duration-padded-x1e",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "1h\x1e"},
        "hello-mtls.dev/duration: duration '1h\x1e' is not like 90m, 24h, 1h30m or 30s",
    ),
    Case(
        "duration-non-ascii-digits",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_DURATION: "\u0663h"},
        "hello-mtls.dev/duration: duration '\u0663h' is not like 90m, 24h, 1h30m or 30s",
    ),
    Case(
        "pod-certificate-non-ascii-digits",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_MODE: "pod-certificate",
            ANNOTATION_DURATION: "2\uff14h",
        },
        "hello-mtls.dev/duration: duration '2\uff14h' is not like 90m, 24h, 1h30m or 30s",
        pod_certificates=True,
    ),
    Case(
        "secret-bad",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SECRET: "Web_TLS"},
        "hello-mtls.dev/secret: 'Web_TLS' is not a valid Secret name",
    ),
    Case(
        "secret-padded-x1d",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SECRET: "\x1dweb-tls"},
        "hello-mtls.dev/secret: '\x1dweb-tls' is not a valid Secret name",
    ),
    Case(
        "mode-unknown",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_MODE: "csi"},
        "hello-mtls.dev/mode: 'csi' is not a mode; use secret or pod-certificate",
    ),
    Case(
        "mode-upper-case",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_MODE: "Pod-Certificate"},
        "hello-mtls.dev/mode: 'Pod-Certificate' is not a mode; use secret or pod-certificate",
    ),
    Case(
        "mode-padded-x1c",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_MODE: "secret\x1c"},
        "hello-mtls.dev/mode: 'secret\x1c' is not a mode; use secret or pod-certificate",
    ),
    Case(
        "mode-checked-after-secret",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SECRET: "Web_TLS", ANNOTATION_MODE: "csi"},
        "hello-mtls.dev/secret: 'Web_TLS' is not a valid Secret name",
    ),
    Case(
        "pod-certificate-disabled",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_MODE: "pod-certificate"},
        "hello-mtls.dev/mode: pod-certificate is not enabled in this installation"
        " (chart value podCertificates.enabled); use secret",
        pod_certificates=False,
    ),
    Case(
        "pod-certificate-disabled-before-lifetime",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_MODE: "pod-certificate",
            ANNOTATION_DURATION: "30m",
        },
        "hello-mtls.dev/mode: pod-certificate is not enabled in this installation"
        " (chart value podCertificates.enabled); use secret",
        pod_certificates=False,
    ),
    Case(
        "pod-certificate-below-an-hour",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_MODE: "pod-certificate",
            ANNOTATION_DURATION: "59m59s",
        },
        "hello-mtls.dev/duration: duration 59m59s is outside the 1h to 91d a pod certificate"
        " may live",
        pod_certificates=True,
    ),
    Case(
        "pod-certificate-ca-bounds-first",
        {
            ANNOTATION_NAME: "web.{ns}.svc",
            ANNOTATION_MODE: "pod-certificate",
            ANNOTATION_DURATION: "92d",
        },
        "hello-mtls.dev/duration: duration 92d is above the CA maximum of 30d",
    ),
    Case(
        "pod-certificate-names-first",
        {ANNOTATION_NAME: "web.other.svc", ANNOTATION_MODE: "pod-certificate"},
        "hello-mtls.dev/name: name 'web.other.svc' is not under namespace '{ns}'",
    ),
    Case(
        "name-checked-before-duration",
        {ANNOTATION_NAME: "db.other", ANNOTATION_DURATION: "forever", ANNOTATION_SECRET: "Bad"},
        "hello-mtls.dev/name: name 'db.other' is not under namespace '{ns}'",
    ),
    *(
        Case(
            f"reserved-tld-{tld}",
            {ANNOTATION_NAME: "web.{ns}"},
            f"hello-mtls.dev/name: name 'web.{tld}' is under reserved top-level domain '{tld}';"
            " a namespace cannot claim it",
            namespace=tld,
        )
        for tld in RESERVED_NAMESPACES
    ),
    Case(
        "reserved-tld-san",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "web.{ns}.svc.cluster.local, web.{ns}"},
        "hello-mtls.dev/sans: name 'web.test' is under reserved top-level domain 'test';"
        " a namespace cannot claim it",
        namespace="test",
    ),
    Case(
        "reserved-tld-allowed-only-what-is-listed",
        {ANNOTATION_NAME: "nas.{ns}", ANNOTATION_SANS: "media.{ns}"},
        "hello-mtls.dev/sans: name 'media.home' is under reserved top-level domain 'home';"
        " a namespace cannot claim it",
        namespace="home",
    ),
    Case(
        "home-arpa-not-under-home",
        {ANNOTATION_NAME: "router.{ns}.arpa"},
        "hello-mtls.dev/name: name 'router.home.arpa' is not under namespace 'home'",
        namespace="home",
    ),
    Case(
        "allowed-namespace-still-checked",
        {ANNOTATION_NAME: "web.other.svc"},
        "hello-mtls.dev/name: name 'web.other.svc' is not under namespace '{ns}'",
        allowed=True,
    ),
    # The operator refuses these; the policy cannot judge them and admits.
    Case(
        "mixed-scripts",
        {ANNOTATION_NAME: "xn--pypl-53dc.{ns}.svc"},
        "hello-mtls.dev/name: name 'xn--pypl-53dc.{ns}.svc' mixes scripts in label"
        " 'xn--pypl-53dc' ('pаypаl')",
        policy=False,
    ),
    Case(
        "ipv6-not-allowed",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "fd00::1"},
        "hello-mtls.dev/sans: IP address 'fd00::1' is not allowed for namespace '{ns}'",
        policy=False,
    ),
    Case(
        "home-arpa-is-a-public-suffix",
        {ANNOTATION_NAME: "home.{ns}"},
        "hello-mtls.dev/name: name 'home.arpa' is an internet name (public suffix 'home.arpa');"
        " a namespace cannot claim it",
        policy=False,
        namespace="arpa",
    ),
    Case(
        "ip-outside-allowed-network",
        {ANNOTATION_NAME: "web.{ns}.svc", ANNOTATION_SANS: "10.2.0.1"},
        "hello-mtls.dev/sans: IP address '10.2.0.1' is not allowed for namespace '{ns}'",
        policy=False,
        allowed=True,
    ),
]
