"""Suite-wide checks: every output the tests leave behind is scanned for secrets at the end."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from runbook.localorg import LocalOrg
from runbook.phases.certificate import ensure_certificate
from runbook.salesforce import connect_local
from runbook.scan import scan_test_outputs
from runbook.work.ports import port_is_free


def free_callback_port() -> int:
    """A free port below Linux's ephemeral range, so a server started on port 0 cannot take it meanwhile."""
    for port in random.sample(range(20000, 30000), 200):
        if port_is_free(port):
            return port
    raise RuntimeError("no free port in 20000-29999")


def run_phases(root: Path, *, phases: list[str] | None = None, **params) -> Path:
    """The runbook through papermill in ``root`` (a free callback port unless given); its work folder."""
    from runbook.run.batch import run_runbook

    params.setdefault("callback_port", free_callback_port())
    summary = run_runbook(workdir=root / "work", runs_dir=root / "runs", phases=phases, params=params,
                          progress=lambda _m: None)
    assert summary.ok, summary.lines()
    return root / "work"


def user_id(session, username: str) -> str:
    """The org's Id for ``username``: what a JWT login's identity URL must name."""
    from runbook.salesforce.rest import query, quote

    return query(session, f"SELECT Id FROM User WHERE Username = {quote(username)}")[0]["Id"]


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    """A local org of the module's own, trusted by this process while the module runs."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    with LocalOrg(tmp_path_factory.mktemp("org")) as running:
        os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca_bundle)
        yield running
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="module")
def session(org):
    return connect_local(org.state_dir)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return ensure_certificate(workdir=tmp_path_factory.mktemp("cert"))


@pytest.fixture(autouse=True, scope="session")
def _stop_local_orgs_at_exit():
    """Local orgs started through runbook.salesforce in this worker are stopped when the session ends."""
    yield
    from runbook.salesforce import stop_local_orgs

    stop_local_orgs()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if an executed notebook, log or report under the test folders holds a secret."""
    if hasattr(session.config, "workerinput"):  # xdist worker: the controller scans once, after all
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    roots = [factory.getbasetemp()] if factory is not None else []
    roots += [p for p in (Path(session.config.rootpath) / "runs",) if p.is_dir()]
    findings = [f for root in roots for f in scan_test_outputs(root)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for finding in findings:
        reporter.write_line(f"SECRET LEAK {finding}", red=True)
    if reporter is not None:
        reporter.write_line(f"secret scan: {len(findings)} finding(s) in the test outputs")
    if findings:
        session.exitstatus = 1


# The longest tests (the browser walkthrough ~50 s, the real CLI's scratch-org round trips, kill-and-rerun runs)
# are handed out first, so the other worker fills in behind them instead of idling while one of them finishes last.
SLOW_FIRST = ("tests/ui/test_walkthrough_browser.py", "tests/test_interop_sf_cli.py", "tests/run/test_crash_rerun.py",
              "tests/apps/test_external_client_app.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: next((i for i, path in enumerate(SLOW_FIRST) if item.nodeid.startswith(path)),
                                     len(SLOW_FIRST)))
