"""Suite-wide checks: every output the tests leave behind is scanned for secrets at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.scan import scan_test_outputs


@pytest.fixture(autouse=True, scope="session")
def _stop_local_orgs_at_exit():
    """Local orgs started through runbook.org in this worker are stopped when the session ends."""
    yield
    from runbook.org import stop_local_orgs

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
