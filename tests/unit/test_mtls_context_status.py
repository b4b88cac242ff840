"""What a reloading context reports (`mtls_context.status`) and its Prometheus form."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mtls_context import ReloadingContext, ReloadingServerContext, Side, statuses
from mtls_context import reloading as reloading_module
from mtls_context.prometheus import StatusCollector
from mtls_context.status import STATUS_DIR_ENV, Status, read_statuses
from support.certdirs import Clock, Issuer, publish, serial_of


def test_a_reload_shows_the_new_serial_and_the_next_generation(
    tmp_path: Path, issuer: Issuer
) -> None:
    first = issuer.issue("web.shop.svc")
    publish(tmp_path, first, [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.SERVER, check_interval=1.0, clock=clock)
    before = reloading.status()
    assert (before.side, before.identity, before.serial) == (
        "server",
        "web.shop.svc",
        serial_of(first),
    )
    assert (before.generation, before.error, before.pid) == (1, None, os.getpid())
    assert before.not_after == reloading.current().certificate.not_after

    second = issuer.issue("web.shop.svc")
    publish(tmp_path, second, [issuer])
    clock.now += 1
    reloading.current()
    after = reloading.status()
    assert (after.serial, after.generation, after.error) == (serial_of(second), 2, None)
    assert after.loaded_at >= before.loaded_at


def test_a_refused_version_is_reported_until_good_files_come_back(
    tmp_path: Path, issuer: Issuer, other_issuer: Issuer
) -> None:
    good = issuer.issue("web.shop.svc")
    publish(tmp_path, good, [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.CLIENT, check_interval=1.0, clock=clock)

    publish(tmp_path, other_issuer.issue("web.shop.svc"), [issuer])  # does not chain
    clock.now += 1
    reloading.current()
    failing = reloading.status()
    assert failing.error == "tls.crt does not chain to a root in ca.crt"
    assert failing.error_at is not None
    assert (failing.serial, failing.generation) == (serial_of(good), 1)  # still the good one
    clock.now += 1
    reloading.current()
    assert reloading.status().error_at == failing.error_at  # first seen, not last

    publish(tmp_path, good, [issuer])  # the files in use are back: nothing is refused now
    clock.now += 1
    reloading.current()
    assert (reloading.status().error, reloading.status().generation) == (None, 1)


def test_an_emptied_directory_is_reported_and_clears(tmp_path: Path, issuer: Issuer) -> None:
    publish(tmp_path, issuer.issue("web.shop.svc"), [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.CLIENT, check_interval=1.0, clock=clock)
    data = tmp_path / "..data"
    target = os.readlink(data)
    data.unlink()
    data.symlink_to("..missing")
    clock.now += 1
    reloading.current()
    assert reloading.status().error == "missing or empty: tls.crt, tls.key, ca.crt"

    data.unlink()
    data.symlink_to(target)
    clock.now += 1
    reloading.current()
    assert reloading.status().error is None


def test_an_unreadable_directory_is_reported_and_read_again(
    tmp_path: Path, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(tmp_path, issuer.issue("web.shop.svc"), [issuer])
    clock = Clock()
    reloading = ReloadingContext(tmp_path, Side.CLIENT, check_interval=1.0, clock=clock)
    publish(tmp_path, issuer.issue("web.shop.svc"), [issuer])

    def denied(directory: Path) -> dict[str, bytes]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(reloading_module, "read_version", denied)
    clock.now += 1
    reloading.current()
    assert reloading.status().error == "cannot read: [Errno 13] Permission denied"

    monkeypatch.undo()  # readable again, though ..data has not changed since
    clock.now += 1
    reloading.current()
    assert (reloading.status().error, reloading.status().generation) == (None, 2)


def test_statuses_lists_every_live_context_of_the_process(tmp_path: Path, issuer: Issuer) -> None:
    publish(tmp_path, issuer.issue("web.shop.svc"), [issuer])
    server = ReloadingServerContext(tmp_path)
    client = ReloadingContext(tmp_path, Side.CLIENT)
    mine = [s for s in statuses() if s.directory == str(tmp_path)]
    assert sorted(s.side for s in mine) == ["client", "server"]
    assert server.status().side == "server"
    del client
    assert [s.side for s in statuses() if s.directory == str(tmp_path)] == ["server"]


def test_with_the_status_dir_set_each_change_is_published(
    tmp_path: Path, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = tmp_path / "status"
    published.mkdir()
    monkeypatch.setenv(STATUS_DIR_ENV, str(published))
    certs = tmp_path / "certs"
    publish(certs, issuer.issue("web.shop.svc"), [issuer])
    clock = Clock()
    reloading = ReloadingContext(certs, Side.SERVER, check_interval=1.0, clock=clock)
    assert reloading.status() in read_statuses(published)

    second = issuer.issue("web.shop.svc")
    publish(certs, second, [issuer])
    clock.now += 1
    reloading.current()
    assert reloading.status() in read_statuses(published)
    assert [p.name for p in published.iterdir()] == [f"{os.getpid()}.json"]


def test_files_of_processes_that_are_gone_are_removed(tmp_path: Path, issuer: Issuer) -> None:
    publish(tmp_path / "certs", issuer.issue("web.shop.svc"), [issuer])
    status = ReloadingContext(tmp_path / "certs", Side.SERVER).status()
    (tmp_path / "101.json").write_text(json.dumps([status.to_json()]))
    (tmp_path / "102.json").write_text(json.dumps([status.to_json()]))
    (tmp_path / "103.json").write_text("{half a file")
    (tmp_path / "notes.json").write_text("[]")

    found = read_statuses(tmp_path, alive=lambda pid: pid != 102)

    assert found == [status]
    assert not (tmp_path / "102.json").exists()
    assert (tmp_path / "101.json").exists()


def test_a_status_survives_json(tmp_path: Path, issuer: Issuer) -> None:
    publish(tmp_path, issuer.issue("web.shop.svc"), [issuer])
    status = ReloadingContext(tmp_path, Side.SERVER).status()
    assert Status.from_json(json.loads(json.dumps(status.to_json()))) == status


def test_the_collector_exposes_each_status(tmp_path: Path, issuer: Issuer) -> None:
    leaf = issuer.issue("web.shop.svc")
    publish(tmp_path, leaf, [issuer])
    status = ReloadingContext(tmp_path, Side.SERVER).status()
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: [status]))

    text = generate_latest(registry).decode()

    samples = {s.name: s for family in text_string_to_metric_families(text) for s in family.samples}
    labels = {"side": "server", "identity": "web.shop.svc", "serial": serial_of(leaf)}
    labels["pid"] = str(os.getpid())
    expected = {
        "hello_mtls_tls_certificate_not_after_timestamp_seconds": status.not_after.timestamp(),
        "hello_mtls_tls_generation": 1.0,
        "hello_mtls_tls_loaded_timestamp_seconds": status.loaded_at.timestamp(),
        "hello_mtls_tls_reload_error": 0.0,
        "hello_mtls_tls_crl_stale": 0.0,
        "hello_mtls_tls_crl_enforced": 0.0,
    }
    assert {name: s.value for name, s in samples.items()} == expected
    assert all(s.labels == labels for s in samples.values())
