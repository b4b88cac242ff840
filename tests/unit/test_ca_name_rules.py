"""The CA's name and duration rules, with the exact message of every rejection."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

from mtls_contract import name_rules
from mtls_contract.durations import check_duration, format_duration, parse_duration
from mtls_contract.identities import ADMIN, provisioner_id, role_of, spiffe_id
from mtls_contract.name_rules import (
    MAX_NAMES,
    RESERVED_TLDS,
    IPNetwork,
    check_name_syntax,
    check_names,
    parse_allowed_ips,
    parse_extra_allowed,
)

M = datetime.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", 90 * M),
        ("24h", 24 * 60 * M),
        ("1h30m", 90 * M),
        ("30s", datetime.timedelta(seconds=30)),
        ("7d", datetime.timedelta(days=7)),
        ("1d2h3m4s", datetime.timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration(text: str, expected: datetime.timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "duration '' is not like 90m, 24h, 1h30m or 30s"),
        ("90", "duration '90' is not like 90m, 24h, 1h30m or 30s"),
        ("1.5h", "duration '1.5h' is not like 90m, 24h, 1h30m or 30s"),
        ("-5m", "duration '-5m' is not like 90m, 24h, 1h30m or 30s"),
        ("30m1h", "duration '30m1h' is not like 90m, 24h, 1h30m or 30s"),
        (" 1h", "duration ' 1h' is not like 90m, 24h, 1h30m or 30s"),
        ("1H", "duration '1H' is not like 90m, 24h, 1h30m or 30s"),
        # Unicode digits (Arabic-Indic 3, fullwidth 1): ASCII ones only, as the admission policy.
        ("\u0663h", "duration '\u0663h' is not like 90m, 24h, 1h30m or 30s"),
        ("1\uff11m", "duration '1\uff11m' is not like 90m, 24h, 1h30m or 30s"),
        ("0s", "duration '0s' must be longer than zero"),
        ("0h0m", "duration '0h0m' must be longer than zero"),
        ("999999999999d", "duration '999999999999d' is too long"),
        ("9" * 40 + "s", "duration '" + "9" * 32 + "...' is too long"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


def test_check_duration_bounds() -> None:
    check_duration(5 * M)
    check_duration(datetime.timedelta(days=30))
    check_duration(M, minimum=M, maximum=M)
    with pytest.raises(ValueError) as low:
        check_duration(2 * M)
    assert str(low.value) == "duration 2m is below the CA minimum of 5m"
    with pytest.raises(ValueError) as high:
        check_duration(datetime.timedelta(days=31))
    assert str(high.value) == "duration 31d is above the CA maximum of 30d"
    with pytest.raises(ValueError) as custom:
        check_duration(90 * M, minimum=M, maximum=60 * M)
    assert str(custom.value) == "duration 1h30m is above the CA maximum of 1h"


def test_format_duration() -> None:
    assert format_duration(datetime.timedelta(0)) == "0s"
    assert format_duration(datetime.timedelta(days=1, seconds=61)) == "1d1m1s"


ACCEPTED = [
    ["web.demo"],
    ["web.demo.svc"],
    ["web.demo.svc.cluster.local"],
    ["10-0-0-7.demo.pod.cluster.local"],
    ["web.demo", "web.demo.svc", "web.demo.svc.cluster.local"],
    ["xn--bcher-kva.demo"],  # bücher
    ["xn--80ak6aa92e.demo"],  # Cyrillic only: a whole-script look-alike, documented as allowed
    ["xn--q9jyb4c.demo"],  # Japanese kana: one script
    ["a" * 63 + ".demo"],
]


@pytest.mark.parametrize("names", ACCEPTED)
def test_check_names_accepts(names: list[str]) -> None:
    check_names(names, namespace="demo")


def test_check_names_extra_allowed() -> None:
    extra = ["api.example.com", "*.demo.example.com"]
    check_names(["api.example.com", "x.demo.example.com"], namespace="demo", extra_allowed=extra)
    for name in ("demo.example.com", "a.b.demo.example.com", "www.example.com"):
        with pytest.raises(ValueError, match=f"^name '{name}' is not under namespace 'demo'$"):
            check_names([name], namespace="demo", extra_allowed=extra)


def test_check_names_other_cluster_domain() -> None:
    check_names(["web.demo.svc.corp.internal"], namespace="demo", cluster_domain="corp.internal")
    with pytest.raises(ValueError):
        check_names(
            ["web.demo.svc.cluster.local"], namespace="demo", cluster_domain="corp.internal"
        )


LONG = ".".join(c * 60 for c in "abcde") + ".demo"
REJECTED = [
    ([], "at least one name is required"),
    (
        [f"n{i}.demo" for i in range(MAX_NAMES + 1)],
        f"{MAX_NAMES + 1} names requested; at most {MAX_NAMES} are allowed",
    ),
    ([""], "empty name"),
    (["web.other"], "name 'web.other' is not under namespace 'demo'"),
    (["web.demo", "db.other.svc"], "name 'db.other.svc' is not under namespace 'demo'"),
    (["demo"], "name 'demo' is not under namespace 'demo'"),
    (["a.b.demo"], "name 'a.b.demo' is not under namespace 'demo'"),
    (
        ["web.demo.svc.cluster.local.evil.com"],
        "name 'web.demo.svc.cluster.local.evil.com' is not under namespace 'demo'",
    ),
    (["web.demo.pod"], "name 'web.demo.pod' is not under namespace 'demo'"),
    (["example.com"], "name 'example.com' is not under namespace 'demo'"),
    (["*.demo"], "wildcard name '*.demo' is not allowed"),
    (["w*b.demo"], "wildcard name 'w*b.demo' is not allowed"),
    (["Web.demo"], "name 'Web.demo' must be lower case"),
    (["web_1.demo"], "name 'web_1.demo' may only contain a-z, 0-9, '-' and '.'"),
    (["web demo"], "name 'web demo' may only contain a-z, 0-9, '-' and '.'"),
    (["web.demo/x"], "name 'web.demo/x' may only contain a-z, 0-9, '-' and '.'"),
    (["http://web.demo"], "name 'http://web.demo' may only contain a-z, 0-9, '-' and '.'"),
    (["web.demo."], "name 'web.demo.' must not end with a dot"),
    (["web..demo"], "name 'web..demo' has an empty label"),
    ([".demo"], "name '.demo' has an empty label"),
    (["-web.demo"], "name '-web.demo' has a label that starts or ends with '-'"),
    (["web-.demo"], "name 'web-.demo' has a label that starts or ends with '-'"),
    (["a" * 64 + ".demo"], f"name '{'a' * 60}...' has a label longer than 63 characters"),
    ([LONG], f"name '{LONG[:60]}...' is longer than 253 characters"),
    (["1.2.3"], "name '1.2.3' is neither a DNS name nor an IP address"),
    (["999.1.1.1"], "name '999.1.1.1' is neither a DNS name nor an IP address"),
    (["0.0.0.0"], "IP address '0.0.0.0' cannot identify a workload"),
    (["::"], "IP address '::' cannot identify a workload"),
    (["224.0.0.1"], "IP address '224.0.0.1' cannot identify a workload"),
    (["bücher.demo"], "name 'bücher.demo' is not ASCII; give international names as xn-- labels"),
    (
        ["wеb.demo"],
        "name 'wеb.demo' is not ASCII; give international names as xn-- labels",
    ),  # Cyrillic е
    (
        ["web\u200b.demo"],
        "name 'web\u200b.demo' is not ASCII; give international names as xn-- labels",
    ),
    (
        ["xn--pypl-53dc.demo"],
        "name 'xn--pypl-53dc.demo' mixes scripts in label 'xn--pypl-53dc' ('pаypаl')",
    ),
    (["xn--abc-.demo"], "name 'xn--abc-.demo' has a label that starts or ends with '-'"),
    (["xn--abc.demo"], "name 'xn--abc.demo' has an invalid punycode label 'xn--abc'"),
    (["xn--web-.demo"], "name 'xn--web-.demo' has a label that starts or ends with '-'"),
    (["xn--web-aaa.demo"], "name 'xn--web-aaa.demo' has an invalid punycode label 'xn--web-aaa'"),
    (["xn--ls8h.demo"], "name 'xn--ls8h.demo' has a label 'xn--ls8h' with symbols ('\U0001f4a9')"),
    (["ab--web.demo"], "name 'ab--web.demo' has a reserved label 'ab--web'"),
    ([None], "name None is not a string"),
]


@pytest.mark.parametrize(("names", "message"), REJECTED, ids=range(len(REJECTED)))
def test_check_names_rejects(names: list[str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_names(names, namespace="demo")
    assert str(info.value) == message


def test_rejection_table_is_big_enough() -> None:
    assert len(REJECTED) >= 25


def test_check_name_syntax_has_no_namespace_rule() -> None:
    check_name_syntax(["localhost", "example.com", "127.0.0.1"])
    with pytest.raises(ValueError, match="^wildcard name"):
        check_name_syntax(["*.example.com"])


def test_check_names_rejects_a_bad_namespace() -> None:
    with pytest.raises(ValueError) as info:
        check_names(["web.Demo"], namespace="Demo")
    assert str(info.value) == "name 'web.Demo' must be lower case"
    with pytest.raises(ValueError) as ns:
        check_names(["10.0.0.1"], namespace="de_mo")
    assert str(ns.value) == "namespace 'de_mo' is not a valid namespace name"


def test_spiffe_id() -> None:
    assert spiffe_id("cluster.local", "demo", "web") == "spiffe://cluster.local/ns/demo/sa/web"
    assert (
        spiffe_id("example.org", "demo", "build.bot") == "spiffe://example.org/ns/demo/sa/build.bot"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", "demo", "web"), "trust domain '' is not a lower-case DNS name"),
        (
            ("Cluster.local", "demo", "web"),
            "trust domain 'Cluster.local' is not a lower-case DNS name",
        ),
        (("a/b", "demo", "web"), "trust domain 'a/b' is not a lower-case DNS name"),
        (("cluster.local", "de/mo", "web"), "namespace 'de/mo' is not a valid namespace name"),
        (("cluster.local", "", "web"), "namespace '' is not a valid namespace name"),
        (("cluster.local", "demo", ""), "service account '' is not a valid name"),
        (("cluster.local", "demo", "we/b"), "service account 'we/b' is not a valid name"),
    ],
)
def test_spiffe_id_rejects(args: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        spiffe_id(*args)
    assert str(info.value) == message


def test_provisioner_id() -> None:
    uri = provisioner_id("cluster.local", "operator")
    assert uri == "spiffe://cluster.local/hello-mtls/provisioner/operator"
    with pytest.raises(ValueError) as info:
        provisioner_id("cluster.local", "op/../ns")
    assert str(info.value) == "provisioner name 'op/../ns' is not a lower-case DNS label"


def test_parse_extra_allowed() -> None:
    assert parse_extra_allowed('{"demo": ["a.example.com", "*.b.example"]}') == {
        "demo": ("a.example.com", "*.b.example")
    }
    assert parse_extra_allowed("{}") == {}
    # json.loads raises RecursionError on the first, and a ValueError of its own on the second.
    deep, long_integer = "[" * 5000, '{"demo": [' + "9" * 5000 + "]}"
    for bad in (
        "",
        "[]",
        '{"demo": "a.example.com"}',
        '{"demo": [1]}',
        "{nope",
        deep,
        long_integer,
    ):
        with pytest.raises(ValueError) as info:
            parse_extra_allowed(bad)
        assert str(info.value) == (
            "extra allowed names must be a JSON object of namespace to a list of names"
        )


def test_credential_roles() -> None:
    admin = provisioner_id("cluster.local", "alice", role=ADMIN)
    assert admin == "spiffe://cluster.local/hello-mtls/admin/alice"
    assert role_of("cluster.local", admin) == "admin"
    assert role_of("cluster.local", provisioner_id("cluster.local", "operator")) == "provisioner"
    for uri in (
        "spiffe://evil.example/hello-mtls/admin/alice",  # another trust domain
        "spiffe://cluster.local/ns/demo/sa/web",  # a workload
        "spiffe://cluster.local/hello-mtls/root/alice",
        "spiffe://cluster.local/hello-mtls/admin/a/b",
        "spiffe://cluster.local/hello-mtls/admin/",
        "spiffe://cluster.local.evil/hello-mtls/admin/alice",
    ):
        assert role_of("cluster.local", uri) is None, uri
    with pytest.raises(ValueError, match="^role 'root' is not one of provisioner, admin$"):
        provisioner_id("cluster.local", "alice", role="root")


# Issue 13, "names a namespace cannot own": these were issued before the public suffix check.
INTERNET_NAMES = [
    ("com", "google.com", "com"),
    ("io", "github.io", "github.io"),  # a private-section suffix: itself a public suffix
    ("shop", "web.shop", "shop"),
    ("uk", "co.uk", "co.uk"),
    ("dev", "x.dev", "dev"),
]


@pytest.mark.parametrize(("namespace", "name", "suffix"), INTERNET_NAMES)
def test_internet_names_are_refused(namespace: str, name: str, suffix: str) -> None:
    with pytest.raises(ValueError) as info:
        check_names([name], namespace=namespace)
    assert str(info.value) == (
        f"name '{name}' is an internet name (public suffix '{suffix}'); a namespace cannot claim it"
    )


def test_the_cluster_forms_of_a_suffix_namespace_stay() -> None:
    check_names(
        ["google.com.svc", "google.com.svc.cluster.local", "1-2-3-4.com.pod.cluster.local"],
        namespace="com",
    )
    # The admin chose the cluster domain: names under it are the cluster's, whatever its TLD.
    check_names(
        ["web.shop.svc.k8s.example.com"], namespace="shop", cluster_domain="k8s.example.com"
    )
    # An admin's allowance is the admin's decision.
    check_names(["web.shop"], namespace="shop", extra_allowed=["web.shop"])


# "Tenant boundaries hold": on no public list, these resolve outside the cluster all the same.
@pytest.mark.parametrize("tld", RESERVED_TLDS)
def test_names_under_a_reserved_top_level_domain_are_refused(tld: str) -> None:
    with pytest.raises(ValueError) as info:
        check_names([f"web.{tld}"], namespace=tld)
    assert str(info.value) == (
        f"name 'web.{tld}' is under reserved top-level domain '{tld}'; a namespace cannot claim it"
    )


def test_the_cluster_forms_of_a_reserved_namespace_stay() -> None:
    check_names(
        ["web.local.svc", "web.local.svc.cluster.local", "web.local.pod.cluster.local"],
        namespace="local",
    )
    check_names(["web.corp.svc.k8s.corp"], namespace="corp", cluster_domain="k8s.corp")
    # An admin gives bare names back, all of them or one by one.
    check_names(["web.corp", "api.corp"], namespace="corp", extra_allowed=["*.corp"])
    check_names(["nas.home"], namespace="home", extra_allowed=["nas.home"])
    with pytest.raises(ValueError, match="^name 'web.home' is under reserved top-level domain"):
        check_names(["web.home"], namespace="home", extra_allowed=["nas.home"])


def _nets(*cidrs: str) -> list[IPNetwork]:
    return [ipaddress.ip_network(c) for c in cidrs]


# Issue 13: any pod could claim any IP address (the API server's Service IP, the metadata
# service, loopback). (allowed networks, address, allowed?)
IP_CASES = [
    ((), "10.96.0.1", False),
    ((), "10.0.0.7", False),
    ((), "fd00::7", False),
    (("10.1.0.0/16",), "10.1.2.3", True),
    (("10.1.0.0/16",), "10.2.0.1", False),
    (("10.1.2.3/32",), "10.1.2.3", True),
    (("fd00::/64",), "fd00::7", True),
    (("fd00::/64",), "10.1.2.3", False),
    # Loopback and link-local: only by a network wholly inside their range.
    (("0.0.0.0/0",), "127.0.0.1", False),
    (("0.0.0.0/0",), "169.254.169.254", False),
    (("0.0.0.0/0",), "8.8.8.8", True),
    (("64.0.0.0/2",), "127.0.0.1", False),
    (("::/0",), "::1", False),
    (("::/0",), "fe80::1", False),
    (("127.0.0.1/32",), "127.0.0.1", True),
    (("127.0.0.1/32",), "127.0.0.2", False),
    (("127.0.0.0/8",), "127.0.0.2", True),
    (("127.0.0.0/16",), "127.0.0.2", True),
    (("169.254.169.254/32",), "169.254.169.254", True),
    (("169.254.0.0/16",), "169.254.1.1", True),
    (("::1/128",), "::1", True),
    (("fe80::/10",), "fe80::1", True),
]


@pytest.mark.parametrize(("allowed", "address", "ok"), IP_CASES)
def test_ip_addresses_only_inside_allowed_networks(
    allowed: tuple[str, ...], address: str, ok: bool
) -> None:
    if ok:
        check_names(["web.shop.svc", address], namespace="shop", allowed_ips=_nets(*allowed))
        return
    with pytest.raises(ValueError) as info:
        check_names(["web.shop.svc", address], namespace="shop", allowed_ips=_nets(*allowed))
    assert str(info.value) == f"IP address '{address}' is not allowed for namespace 'shop'"


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "::", "224.0.0.1", "::ffff:10.1.2.3", "fe80::1%eth0"]
)
def test_addresses_no_network_can_allow(address: str) -> None:
    with pytest.raises(ValueError) as info:
        check_names(
            [address], namespace="shop", allowed_ips=_nets("0.0.0.0/0", "::/0", "fe80::/10")
        )
    assert str(info.value) == f"IP address '{address}' cannot identify a workload"


def test_parse_allowed_ips() -> None:
    allowed = parse_allowed_ips('{"shop": ["10.1.0.0/16", "10.2.0.9", "fd00::/64"], "bank": []}')
    assert allowed == {"shop": tuple(_nets("10.1.0.0/16", "10.2.0.9/32", "fd00::/64")), "bank": ()}
    assert parse_allowed_ips("{}") == {}
    for text in ("", "[]", '{"shop": "10.1.0.0/16"}', '{"shop": [1]}'):
        with pytest.raises(ValueError) as bad:
            parse_allowed_ips(text)
        assert str(bad.value) == "allowed IPs must be a JSON object of namespace to a list of CIDRs"
    with pytest.raises(ValueError) as host_bits:
        parse_allowed_ips('{"shop": ["10.1.2.3/16"]}')
    assert str(host_bits.value) == "allowed IPs of namespace 'shop': 10.1.2.3/16 has host bits set"


def test_preload_parses_the_public_suffix_list_once_before_any_request() -> None:
    name_rules._suffix_list.cache_clear()
    name_rules.preload()
    assert name_rules._suffix_list.cache_info().currsize == 1
    name_rules.check_names(["web.shop.svc"], namespace="shop")
    assert name_rules._suffix_list.cache_info().misses == 1
