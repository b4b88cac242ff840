"""The docs stay true to the repository: links resolve, the quick start's pods get a hello.

Renaming a test, a page or a heading breaks a link silently; these tests make it loud.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from mtls_contract.marks import ANNOTATION_NAME
from mtls_operator.claims import Claim, Rules, parse_claim

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    *(ROOT / name for name in ("README.md", "CONTRIBUTING.md", "SECURITY.md", "CHANGELOG.md")),
    ROOT / "benchmarks" / "RESULTS.md",
    *sorted(ROOT.glob("docs/**/*.md")),
]
QUICK_START = ROOT / "examples" / "hello.yaml"
MOUNT_PATH = "/var/run/hello-mtls"

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)|^\[[^\]]+\]: *(\S+)", re.MULTILINE)
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)


def _prose(page: Path) -> str:
    return _FENCE.sub("", page.read_text())


def _anchors(page: Path) -> set[str]:
    # GitHub's heading ids: lower case, everything but letters, digits, "-", "_" and spaces
    # dropped, spaces turned into hyphens (github-slugger); repeats get -1, -2, ...
    anchors: set[str] = set()
    for heading in _HEADING.findall(_prose(page)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        repeat = 0
        unique = slug
        while unique in anchors:
            repeat += 1
            unique = f"{slug}-{repeat}"
        anchors.add(unique)
    return anchors


def _links(page: Path) -> list[str]:
    links = [inline or reference for inline, reference in _LINK.findall(_prose(page))]
    return [link for link in links if not urlsplit(link).scheme]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_names_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for link in _links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link}: no such heading in {target.relative_to(ROOT)}")
    assert broken == []


def test_the_link_checker_sees_inline_and_reference_links_outside_code(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# The CA (`mtls_ca`): rules → names\n"
        "See [a](a.md#x), [b][b] and [web](https://example.org/).\n"
        "```sh\n# not a heading [c](c.md)\n```\n"
        "## The CA (`mtls_ca`): rules → names\n"
        "[b]: ../b.py\n"
    )
    assert _links(page) == ["a.md#x", "../b.py"]
    assert _anchors(page) == {"the-ca-mtls_ca-rules--names", "the-ca-mtls_ca-rules--names-1"}


def _quick_start() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(QUICK_START.read_text()) if doc]


def _deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _quick_start() if d["kind"] == "Deployment"}


def _annotated_pods() -> list[tuple[str, str, dict[str, Any]]]:
    """(where, namespace, pod) for every annotated pod or pod template the docs show."""
    examples = [(QUICK_START.name, doc) for doc in _quick_start()]
    for page in PAGES:
        for block in _YAML_BLOCK.findall(page.read_text()):
            if ANNOTATION_NAME in block:  # other blocks may hold placeholders that are not YAML
                examples += [(page.name, doc) for doc in yaml.safe_load_all(block) if doc]
    pods = []
    for where, doc in examples:
        pod = doc.get("spec", {}).get("template", doc)
        namespace = doc.get("metadata", {}).get("namespace")
        if ANNOTATION_NAME in pod.get("metadata", {}).get("annotations", {}) and namespace:
            pods.append((where, namespace, pod))
    return pods


def _claim(namespace: str, pod: dict[str, Any]) -> Claim:
    annotations = pod["metadata"]["annotations"]
    return parse_claim(annotations, namespace=namespace, service_account="default", rules=Rules())


def test_every_annotated_example_claims_allowed_names_and_mounts_the_secret_it_gets() -> None:
    """Hand-wired examples mount the Secret the annotation gets; the others leave it all to the
    wiring policy (no volume, no mount: tests/e2e/test_admission_wiring.py runs the quick start)."""
    pods = _annotated_pods()
    assert {where for where, _, _ in pods} >= {"README.md", QUICK_START.name}
    for where, namespace, pod in pods:
        claim = _claim(namespace, pod)
        spec = pod.get("spec", {})
        volumes = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", [])}
        for container in spec.get("containers", []):
            mounts = container.get("volumeMounts", [])
            if not volumes:
                assert mounts == [], f"{where}: a mount without a volume"
                continue
            (mount,) = mounts
            assert mount["mountPath"] == MOUNT_PATH
            assert volumes[mount["name"]] == claim.secret


def test_quick_start_client_calls_a_name_in_the_servers_certificate() -> None:
    deployments = _deployments()
    server = deployments["web"]
    (client_container,) = deployments["client"]["spec"]["template"]["spec"]["containers"]
    (url,) = [a.removeprefix("--url=") for a in client_container["args"] if a.startswith("--url=")]
    claim = _claim(server["metadata"]["namespace"], server["spec"]["template"])
    assert urlsplit(url).hostname in claim.names


def test_quick_start_runs_the_images_make_images_builds() -> None:
    values = yaml.safe_load((ROOT / "charts" / "hello-mtls" / "values.yaml").read_text())
    images = {f"{values['images'][app]}:{values['images']['tag']}" for app in ("server", "client")}
    used = {
        container["image"]
        for deployment in _deployments().values()
        for container in deployment["spec"]["template"]["spec"]["containers"]
    }
    assert used == images
