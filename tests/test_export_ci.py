"""`runbook export-ci`: the CI variables in a mode-0600 file, never printed, and only phase 1's key."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_phases

from runbook.certificate import ensure_certificate
from runbook.cli import main
from runbook.localorg import ADMIN_USERNAME
from runbook.workdir import open_workdir


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    return run_phases(tmp_path_factory.mktemp("export"))


def _export(workdir: Path, fmt: str, out: Path, *extra: str):
    result = CliRunner().invoke(main, ["export-ci", "--workdir", str(workdir), "--format", fmt, "-o", str(out),
                                       *extra])
    return result


@pytest.mark.parametrize("fmt", ["env", "github", "gitlab"])
def test_export_writes_the_ci_variables_with_mode_0600_and_prints_none(verified, tmp_path, fmt):
    out = tmp_path / f"ci.{fmt}"
    result = _export(verified, fmt, out)
    try:
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        wd = open_workdir(verified)
        key_pem = Path(wd.load("certificate")["key_path"]).read_bytes()
        verify = wd.load("verify")
        text = out.read_text()
        if fmt == "gitlab":
            rows = json.loads(text)
            values = {row["key"]: row["value"] for row in rows}
            assert all(row["protected"] for row in rows)
            assert [row["key"] for row in rows if row["masked"]] == ["SF_JWT_KEY_BASE64"]
        else:
            pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
            values = {name: shlex.split(value)[0] for name, value in pairs}
        assert values["SF_CONSUMER_KEY"] == verify["consumer_key"]
        assert values["SF_USERNAME"] == ADMIN_USERNAME
        assert values["SF_INSTANCE_URL"] == verify["login_url"]
        assert base64.b64decode(values["SF_JWT_KEY_BASE64"]) == key_pem
        assert values["SF_JWT_KEY_BASE64"] not in result.output
        assert verify["consumer_key"] not in result.output
        assert "mode 0600" in result.output and str(out) in result.output
    finally:
        out.unlink(missing_ok=True)  # it holds the key: the suite's secret scan would rightly flag it


def test_export_refuses_a_user_phase_4_did_not_verify(verified, tmp_path):
    result = _export(verified, "env", tmp_path / "ci.env", "--username", "dev@local.devhub")
    assert result.exit_code == 1
    assert "username='dev@local.devhub' is not valid" in result.output and "verify this user first" in result.output
    assert not (tmp_path / "ci.env").exists()


def test_export_before_phase_4_is_refused(tmp_path):
    result = _export(tmp_path, "github", tmp_path / "ci.env")
    assert result.exit_code == 1 and "run phase 4 (04_verify) first" in result.output


def _tampered(verified: Path, tmp_path: Path, phase: str, **changes) -> Path:
    """A copy of the verified work folder's records with ``changes`` made to one of them."""
    work = tmp_path / "work"
    shutil.copytree(verified / "phases", work / "phases")
    record = json.loads((work / "phases" / f"{phase}.json").read_text())
    (work / "phases" / f"{phase}.json").write_text(json.dumps({**record, **changes}))
    return work


def test_export_refuses_a_record_naming_a_file_that_is_not_a_private_key(verified, tmp_path):
    hostname = tmp_path / "hostname"
    hostname.write_text("build-host-7\n")
    work = _tampered(verified, tmp_path, "verify", key_path=str(hostname))
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1
    assert (f"key_path='{hostname}' is not valid: the phase 1 record names this file as the private key, but it "
            "is not one. Fix: rerun phase 1 (01_certificate)") in result.output
    assert not (tmp_path / "ci.env").exists()


def test_export_refuses_a_device_without_reading_it(verified, tmp_path):
    work = _tampered(verified, tmp_path, "verify", key_path="/dev/zero")
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1 and "'/dev/zero' is not valid" in result.output
    assert "not a regular file" in result.output


def test_export_refuses_a_private_key_that_does_not_match_the_certificate(verified, tmp_path):
    other = ensure_certificate(workdir=tmp_path / "other")
    work = _tampered(verified, tmp_path, "verify", key_path=other.key_path)
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1
    cert_path = open_workdir(verified).load("certificate")["cert_path"]
    assert f"this key does not match the certificate on record, {cert_path}" in result.output
    assert not (tmp_path / "ci.env").exists()


def test_export_refuses_a_certificate_the_app_does_not_trust(verified, tmp_path):
    work = _tampered(verified, tmp_path, "connected_app", certificate_fingerprint="AB:" * 31 + "AB")
    result = _export(work, "env", tmp_path / "ci.env")
    assert result.exit_code == 1
    assert "trusts the certificate AB:AB" in result.output and "rerun phases 2 and 4" in result.output
