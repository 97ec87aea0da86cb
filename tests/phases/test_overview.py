"""Where you stand: derived from the work folder and the org each time, never remembered."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from runbook.phases.access import build_access_spec, ensure_access
from runbook.phases.certificate import ensure_certificate
from runbook.phases.connected_app import build_spec, ensure_connected_app
from runbook.phases.overview import phase_overview
from runbook.phases.verify import verify_setup
from runbook.salesforce import connect, rest, start_local_org

START_HERE = Path(__file__).parent.parent.parent / "notebooks" / "00_start_here.ipynb"


def _states(overview) -> dict[str, str]:
    return {p.phase: p.state for p in overview.phases}


def _set_up(workdir: Path):
    """All four phases through the package, as the notebooks' cells do them."""
    start_local_org(workdir / "localorg")
    session = connect("local", workdir=workdir)
    cert = ensure_certificate(workdir=workdir)
    ensure_connected_app(session, build_spec(app_name="Runbook_CI", contact_email="ci@example.com",
                                             callback_port="auto", cert_path=cert.cert_path), workdir=workdir)
    ensure_access(session, build_access_spec(app_name="Runbook_CI"), workdir=workdir)
    verify_setup(session, workdir=workdir)
    return session


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path / "work"


def test_empty_work_folder_is_pending_everywhere(workdir):
    overview = phase_overview(workdir)
    assert set(_states(overview).values()) == {"pending"}
    assert overview.next_phase.notebook == "01_certificate.ipynb"
    assert "Next: 01_certificate.ipynb" in str(overview)


def test_finished_setup_is_done_everywhere_in_the_html(workdir):
    session = _set_up(workdir)
    overview = phase_overview(workdir, session)
    assert set(_states(overview).values()) == {"done"}, str(overview)
    html = overview._repr_html_()
    assert html.count("data-state='done'") == 4
    assert "All four phases are done." in html
    assert "<a href='02_connected_app.ipynb'>" in html


def test_removed_key_fails_phase_one(workdir):
    session = _set_up(workdir)
    (workdir / "keys" / "server.key").unlink()
    overview = phase_overview(workdir, session)
    assert overview.state("certificate") == "failed"
    assert "rerun phase 1" in overview.phases[0].detail


def test_rotated_key_fails_the_app_and_the_verification_until_rerun(workdir):
    session = _set_up(workdir)
    ensure_certificate(workdir=workdir, rotate=True)
    states = _states(phase_overview(workdir, session))
    assert states == {"certificate": "done", "connected_app": "failed", "access": "done", "verify": "failed"}


def test_pre_authorization_removed_in_the_org_fails_phase_three(workdir):
    session = _set_up(workdir)
    app_id = rest.query(session, "SELECT Id FROM ConnectedApplication WHERE Name = 'Runbook CI'")[0]["Id"]
    for row in rest.query(session, f"SELECT Id FROM SetupEntityAccess WHERE SetupEntityId = '{app_id}'"):
        rest.delete(session, "SetupEntityAccess", row["Id"])
    overview = phase_overview(workdir, session)
    assert overview.state("access") == "failed"
    assert "pre-authorize profile System Administrator" in overview.phases[2].detail
    assert _states(phase_overview(workdir))["access"] == "done"  # without the org, the record alone


def test_start_here_runs_under_papermill_without_waiting_for_a_password(tmp_path, monkeypatch):
    for name in ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "00.ipynb"
    papermill.execute_notebook(str(START_HERE), str(out), parameters={"org": "password", "workdir": str(tmp_path)},
                               kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "No frontend to ask for a password: export SF_USERNAME and SF_PASSWORD" in text
    assert html.count("data-state='pending'") == 4
    assert "not checked: Could not connect to the org" in html
