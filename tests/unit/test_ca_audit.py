"""The audit trail: every kind of tampering is detected, a crash is not tampering."""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mtls_ca import audit
from mtls_ca.audit import AuditLog, canonical, verify
from mtls_ca.authority import CA

HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


def _log(directory: Path, ca: CA, **kwargs: object) -> AuditLog:
    return AuditLog(directory, signing=lambda: ca, **kwargs)  # type: ignore[arg-type]


def _filled(tmp_path: Path, ca: CA, records: int = 25, head_every: int = 10) -> Path:
    log = _log(tmp_path / "audit", ca, head_every=head_every)
    for n in range(records):
        log.issuance(f"spiffe://cluster.local/op{n}", ca.issue(f"n{n}.demo", valid_for=HOUR))
    log.sign_head()
    return tmp_path / "audit"


def _lines(directory: Path) -> list[bytes]:
    return (directory / "000001.jsonl").read_bytes().splitlines(keepends=True)


def _write(directory: Path, lines: list[bytes]) -> None:
    (directory / "000001.jsonl").write_bytes(b"".join(lines))


def _rechained(lines: list[bytes], start: int) -> list[bytes]:
    """What a forger without the key does: recompute every prev from ``start`` on."""
    out = lines[:start]
    prev = hashlib.sha256(out[-1].rstrip(b"\n")).hexdigest() if out else audit.GENESIS
    for line in lines[start:]:
        document = json.loads(line)
        document["prev"] = prev
        document["seq"] = len(out) + 1
        if document["kind"] == "head":
            document["what"]["head"], document["what"]["records"] = prev, len(out)
        encoded = canonical(document)
        out.append(encoded + b"\n")
        prev = hashlib.sha256(encoded).hexdigest()
    return out


def test_an_intact_log_verifies_with_a_head_every_n_records(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    verdict = verify(directory, [ca.root])
    assert verdict.intact, verdict.problem
    records = list(audit.read(directory))
    assert [r["seq"] for r in records] == list(range(1, 29))
    assert [r["seq"] for r in records if r["kind"] == "head"] == [10, 20, 28]
    assert verdict.records == verdict.signed == 28
    first = records[0]
    assert first["by"] == "spiffe://cluster.local/op0"
    assert first["what"]["names"] == ["n0.demo"]
    assert len(first["what"]["public_key_sha256"]) == 64
    assert first["prev"] == audit.GENESIS


def test_an_edited_record_is_named(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    lines = _lines(directory)
    lines[4] = lines[4].replace(b"n4.demo", b"n9.demo")
    _write(directory, lines)
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "line 6 (seq 6): its prev is not the hash of seq 5" in str(verdict.problem)


def test_an_edit_rechained_by_a_forger_breaks_the_head_signature(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    lines = _lines(directory)
    lines[4] = lines[4].replace(b"n4.demo", b"n9.demo")
    _write(directory, _rechained(lines, 4))
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "(seq 10): the head's signature does not verify" in str(verdict.problem)


@pytest.mark.parametrize("index", [0, 4, 26])
def test_a_deleted_record_is_named(tmp_path: Path, ca: CA, index: int) -> None:
    directory = _filled(tmp_path, ca)
    lines = _lines(directory)
    del lines[index]
    _write(directory, lines)
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert f"seq {index + 2} where {index + 1} belongs" in str(verdict.problem)


def test_reordered_records_are_named(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    lines = _lines(directory)
    lines[3], lines[4] = lines[4], lines[3]
    _write(directory, lines)
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "line 4: seq 5 where 4 belongs" in str(verdict.problem)


def test_a_truncated_log_is_told_by_the_kept_head(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    _write(directory, _lines(directory)[:15])
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "head.json names the signed head seq 28, which the log does not hold" in str(
        verdict.problem
    )


def test_a_truncation_that_removes_the_kept_head_too_is_told(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    _write(directory, _lines(directory)[:15])
    (directory / "head.json").unlink()
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "head.json is missing" in str(verdict.problem)


def test_a_forged_head_signature_is_named(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    lines = _lines(directory)
    head = json.loads(lines[19])
    forger = CA.create()  # a key of the forger's own, or the right certificate with it
    head["what"]["certificate"] = base64.b64encode(
        forger.intermediate.public_bytes(serialization.Encoding.DER)
    ).decode()
    lines[19] = canonical(head) + b"\n"
    _write(directory, _rechained(lines, 19))
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "(seq 20)" in str(verdict.problem)


def test_a_head_signed_by_a_foreign_ca_is_named(tmp_path: Path, ca: CA) -> None:
    forger = CA.create()
    directory = _filled(tmp_path, forger)
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "(seq 10): the head's signer" in str(verdict.problem)
    assert "does not chain to the trust bundle" in str(verdict.problem)


def test_a_record_appended_after_the_head_with_a_wrong_hash(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    lines = _lines(directory)
    extra = json.loads(lines[0])
    extra["seq"] = 29
    lines.append(canonical(extra) + b"\n")
    _write(directory, lines)
    verdict = verify(directory, [ca.root])
    assert not verdict.intact
    assert "line 29 (seq 29): its prev is not the hash of seq 28" in str(verdict.problem)


def test_a_torn_last_line_is_a_crash_and_the_next_writer_mends_it(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca, records=5)
    _log(directory, ca).record("revocation", "cli:root", serial="ab", reason="keyCompromise")
    path = directory / "000001.jsonl"
    data = path.read_bytes()
    torn = data[: len(data) - 40]  # the write of the last record cut short
    path.write_bytes(torn)
    verdict = verify(directory, [ca.root])
    assert verdict.intact, verdict.problem
    assert any("torn last line" in note for note in verdict.notes)

    _log(directory, ca).record("revocation", "cli:root", serial="ab", reason="keyCompromise")
    verdict = verify(directory, [ca.root])
    assert verdict.intact, verdict.problem
    kinds = [r["kind"] for r in audit.read(directory)]
    assert kinds[-2:] == ["recovery", "revocation"]
    recovery = list(audit.read(directory))[-2]["what"]
    kept = (directory / recovery["kept_in"]).read_bytes()
    assert kept == torn[torn.rfind(b"\n") + 1 :]
    assert recovery["torn_sha256"] == hashlib.sha256(kept).hexdigest()


def test_a_torn_line_inside_the_log_is_tampering(tmp_path: Path, ca: CA) -> None:
    directory = _filled(tmp_path, ca)
    lines = _lines(directory)
    lines[5] = lines[5][:30]
    _write(directory, lines)
    assert not verify(directory, [ca.root]).intact


def test_the_chain_runs_on_across_segments(tmp_path: Path, ca: CA) -> None:
    log = _log(tmp_path / "audit", ca, head_every=7, segment_bytes=2000)
    for n in range(30):
        log.issuance("spiffe://cluster.local/op", ca.issue(f"n{n}.demo", valid_for=HOUR))
    segments = sorted(p.name for p in (tmp_path / "audit").glob("*.jsonl"))
    assert len(segments) > 3
    assert verify(tmp_path / "audit", [ca.root]).intact
    # A later writer (another process, a restart) goes on in the newest segment.
    _log(tmp_path / "audit", ca, segment_bytes=2000).record("revocation", "cli:root", serial="1")
    assert verify(tmp_path / "audit", [ca.root]).intact
    (tmp_path / "audit" / segments[1]).unlink()
    verdict = verify(tmp_path / "audit", [ca.root])
    assert not verdict.intact
    assert "records deleted or reordered" in str(verdict.problem)


def _append_many(directory: str, count: int) -> None:
    log = AuditLog(Path(directory))
    for n in range(count):
        log.record("revocation", f"writer-{n}", serial=f"{n:x}")


def test_writers_in_several_processes_keep_one_chain(tmp_path: Path, ca: CA) -> None:
    directory = tmp_path / "audit"
    here = _log(directory, ca, head_every=50)
    context = multiprocessing.get_context("spawn")
    others = [context.Process(target=_append_many, args=(str(directory), 60)) for _ in range(2)]
    for process in others:
        process.start()
    for n in range(60):
        here.record("refusal", "spiffe://cluster.local/x", reason="policy", message=f"m{n}")
    for process in others:
        process.join(timeout=60)
        assert process.exitcode == 0
    here.sign_head()
    verdict = verify(directory, [ca.root])
    assert verdict.intact, verdict.problem
    assert verdict.records >= 181


def test_heads_from_before_a_root_rotation_verify_by_the_roots_it_names(
    tmp_path: Path, ca: CA
) -> None:
    new = CA.create()
    signing = [ca]
    log = AuditLog(tmp_path / "audit", signing=lambda: signing[0], head_every=5)
    for n in range(6):
        log.record("revocation", "cli:root", serial=f"{n:x}")
    roots = [c.root_pem.decode() for c in (ca, new)]
    log.record("rotation", "cli:root", step="both-trusted", roots=roots)
    signing[0] = new
    log.record("rotation", "cli:root", step="idle", roots=roots[1:])
    log.sign_head()
    assert verify(tmp_path / "audit", [new.root]).intact
    assert not verify(tmp_path / "audit", [ca.root]).intact


def test_records_are_echoed_as_json_lines(tmp_path: Path, ca: CA) -> None:
    echo = io.StringIO()
    log = _log(tmp_path / "audit", ca, echo=echo)
    written = log.record("revocation", "cli:root", serial="ab")
    assert json.loads(echo.getvalue()) == written
    assert echo.getvalue().encode() == (tmp_path / "audit" / "000001.jsonl").read_bytes()


def test_an_unknown_kind_is_refused(tmp_path: Path, ca: CA) -> None:
    with pytest.raises(ValueError, match="audit record kind 'revoke' is unknown"):
        _log(tmp_path / "audit", ca).record("revoke", "cli:root")


def test_a_lost_stdout_stops_no_record(tmp_path: Path, ca: CA) -> None:
    echo = io.StringIO()
    echo.close()
    log = _log(tmp_path / "audit", ca, echo=echo)
    log.record("revocation", "cli:root", serial="ab")
    assert [r["what"]["serial"] for r in audit.read(tmp_path / "audit")] == ["ab"]


def test_threads_share_flushes_and_every_record_is_durable_on_return(
    tmp_path: Path, ca: CA
) -> None:
    log = _log(tmp_path / "audit", ca, head_every=40, segment_bytes=20_000)
    synced: list[bool] = []

    def write(n: int) -> None:
        written = log.record("revocation", f"writer-{n}", serial=f"{n:x}")
        synced.append(log._flush.synced >= written["seq"])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(400)))
    assert all(synced) and len(synced) == 400
    assert verify(tmp_path / "audit", [ca.root]).intact
    assert len(list((tmp_path / "audit").glob("*.jsonl"))) > 3
