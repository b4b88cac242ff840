"""charts/hello-mtls/values.schema.json: every value of values.yaml is in it, values.yaml passes,
and ``helm template`` refuses a typo'd key, a wrong type and a value outside its set with Helm's own
error (the schema is what ``helm install`` and ``helm upgrade`` check too)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from support.chart import CHART, render, run_helm_template
from support.cluster_api import APP_METRICS_PORT
from support.name_cases import ALLOWED_IPS, EXTRA_ALLOWED_NAMES, MINIMUM_DURATION

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
HELM_SCHEMA_ERROR = "values don't meet the specifications of the schema(s)"


def leaves(values: dict[str, Any], schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """The dotted path of every value in ``values`` that ``schema`` does not name."""
    for key, value in values.items():
        child = schema.get("properties", {}).get(key)
        if child is None:
            yield f"{path}{key}"
        elif isinstance(value, dict) and "properties" in child:
            yield from leaves(value, child, f"{path}{key}.")


def closed_objects(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, object]]:
    """(path, additionalProperties) of every object schema whose keys the chart reads by name."""
    if "properties" in schema:
        yield path or "(top)", schema.get("additionalProperties")
        for key, child in schema["properties"].items():
            yield from closed_objects(child, f"{path}{key}.")


def test_the_schema_is_draft_07() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_every_value_in_values_yaml_is_in_the_schema() -> None:
    assert list(leaves(VALUES, SCHEMA)) == []


def test_every_object_with_named_keys_refuses_other_keys() -> None:
    assert [path for path, extra in closed_objects(SCHEMA) if extra is not False] == []


def test_values_yaml_passes() -> None:
    assert render().get("Deployment", "hello-mtls-ca")


@pytest.mark.parametrize(
    ("value", "error"),
    [
        # A typo: without the schema the chart would render its default and say nothing.
        ("ca.tlsProfil=modern", "at '/ca': additional properties 'tlsProfil' not allowed"),
        ("wiringpolicy.enabled=false", "additional properties 'wiringpolicy' not allowed"),
        ("metrics.prometheusRule.enable=true", "additional properties 'enable' not allowed"),
        # A wrong type.
        ("ca.workers=two", "at '/ca/workers': got string, want integer"),
        ("namesPolicy.enabled=no", "at '/namesPolicy/enabled': got string, want boolean"),
        ("operator.watchNamespaces=shop", "at '/operator/watchNamespaces': got string, want array"),
        # A value outside its set.
        ("ca.tlsProfile=old", "at '/ca/tlsProfile'"),
        ("examples.serverStack=django", "at '/examples/serverStack'"),
        ("images.pullPolicy=Sometimes", "at '/images/pullPolicy'"),
        ("certificates.defaultDuration=1 day", "at '/certificates/defaultDuration'"),
        ("certificates.renewFraction=1.5", "at '/certificates/renewFraction'"),
        ("podCertificates.signerName=no-slash", "at '/podCertificates/signerName'"),
        ("ca.signers.replicas=-1", "at '/ca/signers/replicas'"),
        ("ca.upstream.mode=cloud", "at '/ca/upstream/mode'"),
        ("metrics.port=70000", "at '/metrics/port'"),
        (
            "metrics.prometheusRule.for.HelloMTLSCADown=soon",
            "at '/metrics/prometheusRule/for/HelloMTLSCADown'",
        ),
        ("federation.trustDomains[0].trustDomain=Other", "at '/federation/trustDomains/0'"),
        ("staleWatch.readsPerSecond=0", "at '/staleWatch/readsPerSecond'"),
        ("staleWatch.metricsPorts={0}", "at '/staleWatch/metricsPorts/0'"),
    ],
)
def test_helm_refuses_a_bad_value_with_its_own_error(value: str, error: str) -> None:
    result = run_helm_template(value)
    assert result.returncode != 0, f"helm rendered {value}"
    assert HELM_SCHEMA_ERROR in result.stderr
    assert error in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "certificates.renewFraction=0.5",
        "podCertificates.refreshFraction=0.25",
        "operator.watchNamespaces={shop,dev}",
        "operator.extraAllowedNames.shop={shop.example.com,*.internal.example.com}",
        "operator.allowedIPs.shop={10.1.0.0/16}",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "certificates.maxDuration=1d12h",
        "ca.persistence.storageClass=fast",
    ],
)
def test_helm_takes_the_values_the_comments_describe(value: str) -> None:
    result = run_helm_template(value)
    assert result.returncode == 0, result.stderr


def test_the_e2e_install_values_pass() -> None:
    """What tests/e2e/conftest.py installs with, so the cluster pass never meets a refusal."""
    result = run_helm_template(
        f"certificates.minDuration={MINIMUM_DURATION}",
        "podCertificates.enabled=true",
        "podCertificates.refreshFraction=0.1",
        "staleWatch.enabled=true",
        "staleWatch.interval=5",
        "staleWatch.staleAfter=150",
        json_values={
            "operator.extraAllowedNames": EXTRA_ALLOWED_NAMES,
            "operator.allowedIPs": ALLOWED_IPS,
            "staleWatch.metricsPorts": [APP_METRICS_PORT],
        },
    )
    assert result.returncode == 0, result.stderr


FEDERATED = {
    "trustDomain": "other.example",
    "bundleEndpointURL": "https://hello-mtls-ca.other.svc:8443/spiffe-bundle",
}


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        (
            {**FEDERATED, "bundleEndpointURL": "http://x/"},
            "/federation/trustDomains/0/bundleEndpointURL",
        ),
        ({**FEDERATED, "profile": "https"}, "/federation/trustDomains/0/profile"),
        (
            {**FEDERATED, "profile": "https_spiffe"},
            "missing properties 'endpointSPIFFEID', 'bundle'",
        ),
        ({**FEDERATED, "trustdomain": "x"}, "additional properties 'trustdomain' not allowed"),
        ({"trustDomain": "other.example"}, "missing property 'bundleEndpointURL'"),
    ],
)
def test_helm_refuses_a_bad_federated_trust_domain(entry: dict[str, str], error: str) -> None:
    result = run_helm_template(json_values={"federation.trustDomains": [entry]})
    assert result.returncode != 0, f"helm rendered {entry}"
    assert HELM_SCHEMA_ERROR in result.stderr
    assert error in result.stderr
