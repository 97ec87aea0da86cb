"""The guided walkthrough in a real browser: JupyterLab driven by Playwright on Debian's Chromium.

The test walks the phase notebooks as a person would: open the notebook, Run All Cells, fill in the
form, click its button, and read what the page shows (inline messages, the status line, the result
card); then it checks the work folder and the org agree with the page, and ends on
00_start_here's overview. JupyterLab runs with its own config/data/runtime folders, no token, on
127.0.0.1; the local org is started here and reaches the kernels through RUNBOOK_LOCAL_ORG_STATE and
REQUESTS_CA_BUNDLE, as under `make lab`. Screenshots go to runs/walkthrough-screenshots/.

Skipped (with the reason) when /usr/bin/chromium or the playwright package is missing; .ci/run
installs Chromium, so CI runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO / "runs" / "walkthrough-screenshots"
NOTEBOOKS = ("00_start_here.ipynb", "01_certificate.ipynb", "02_connected_app.ipynb",
             "03_policies_and_access.ipynb", "04_verify.ipynb")
NEW_PERMISSION_SET = "Runbook_JWT_Users"


def _missing() -> str:
    if not CHROMIUM.exists():
        return ("no Chromium at /usr/bin/chromium: `apt-get install -y --no-install-recommends chromium` "
                "(.ci/run does it) to run the browser walkthrough")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: `.venv/bin/pip install -e '.[dev]'`"
    return ""


MISSING = _missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING)

# The kernel is started, connected and idle. (The toolbar's indicator says "idle" before there is a kernel at all,
# while the status bar says "No Kernel | Initializing", then "Python 3 (ipykernel) | Connecting", ...)
KERNEL_READY = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(e => /^(?!No Kernel).+ \\| Idle$/.test(e.textContent.trim()))"""
# Every code cell has a number and none is running; or a cell failed (Run All stops there).
RUN_ALL_FINISHED = """() => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
  const failed = [...document.querySelectorAll('.jp-OutputArea-output')]
      .some(e => e.textContent.includes('Traceback (most recent call last)'));
  return !prompts.some(p => p.includes('*')) && (failed || prompts.every(p => /^\\[\\d+\\]:$/.test(p)));
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("walkthrough")


@pytest.fixture(scope="module")
def local_org(root):
    from runbook.localorg import LocalOrg

    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    org = LocalOrg(root / "org").start()
    yield org
    org.stop()
    if saved is None:  # runbook.salesforce.connect_local (used by the checks below) sets it for this process
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = saved


@pytest.fixture(scope="module")
def lab(root, local_org):
    """JupyterLab on a copy of the notebooks; returns its base URL and the notebooks' work folder."""
    from runbook.ui.lab import lab_command, lab_environment

    org = local_org
    notebooks = root / "lab"
    notebooks.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / name, notebooks / name)
    config = root / "jupyter-config"
    settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(  # no "Jupyter news" toast over the page
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_DATA_DIR": str(root / "jupyter-data"),
           "JUPYTER_RUNTIME_DIR": str(root / "jupyter-runtime"),
           **lab_environment(state_dir=org.state_dir, url=org.url, ca_bundle=org.ca_bundle, project_dir=root)}
    port = _free_port()
    log = (root / "jupyterlab.log").open("w")
    proc = subprocess.Popen(lab_command(root=notebooks, port=port, token=False, open_browser=False), env=env,
                            cwd=notebooks, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_lab(base, proc, root / "jupyterlab.log")
        yield base, root / "work"  # the notebooks' relative workdir is under the lab's project folder
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_lab(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/api/status", timeout=2).ok:
                return
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer in 60 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


class LabNotebook:
    """One notebook open in its own JupyterLab workspace, in its own browser page."""

    def __init__(self, page, name: str, screenshots: Path):
        self.page, self.name, self.screenshots = page, name, screenshots

    def run_all(self) -> None:
        """Menu Run → Run All Cells, then wait for every cell; fails with the traceback if a cell failed."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        self.page.wait_for_function(RUN_ALL_FINISHED, timeout=60_000)
        errors = self.page.locator(".jp-OutputArea-output", has_text="Traceback (most recent call last)")
        if errors.count():
            self.shot(f"FAILED-{self.name}")
            pytest.fail(f"{self.name}: a cell failed in JupyterLab:\n{errors.first.inner_text()[-3000:]}")

    def form(self, phase: str):
        return self.page.locator(f".runbook-form-{phase}")

    def fill(self, form, name: str, value: str) -> None:
        box = form.locator(f".runbook-field-{name}").locator("input, textarea").first
        box.fill(value)
        box.press("Tab")  # number fields send their value on change, not on each key

    def tick(self, form, name: str) -> None:
        form.locator(f".runbook-field-{name} input[type=checkbox]").check()

    def press(self, form, button: str) -> tuple[str, str]:
        """Click Preview/Apply; wait for that run to finish; returns (done|failed, the status line)."""
        from playwright.sync_api import expect

        line = form.locator(".runbook-status-line")
        before = int(line.get_attribute("data-run"))
        form.locator(f"button.runbook-{button}").click()
        finished = form.locator(f".runbook-status-line[data-run='{before + 1}']:is([data-state=done], "
                                "[data-state=failed])")
        expect(finished).to_have_count(1, timeout=30_000)
        return finished.get_attribute("data-state"), finished.inner_text()

    def shot(self, name: str, element=None) -> Path:
        """A screenshot of the page, scrolled so that ``element`` starts at the top."""
        if element is not None:
            element.evaluate("e => e.scrollIntoView({block: 'start'})")
            self.page.wait_for_timeout(150)  # let the notebook's lazy rendering paint what scrolled in
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


@contextlib.contextmanager
def open_notebook(browser, base: str, name: str, screenshots: Path):
    """Open ``name`` in a fresh page and workspace; wait until its kernel is idle."""
    page = browser.new_page(viewport={"width": 1400, "height": 1700})
    page.set_default_timeout(30_000)
    workspace = name.split("_")[0]
    page.goto(f"{base}/lab/workspaces/w{workspace}/tree/{name}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    page.wait_for_function(KERNEL_READY, timeout=60_000)
    notebook = LabNotebook(page, name, screenshots)
    try:
        yield notebook
    except BaseException:
        notebook.shot(f"FAILED-{Path(name).stem}")
        raise
    finally:
        page.close()


def _record(workdir: Path, phase: str) -> dict:
    return json.loads((workdir / "phases" / f"{phase}.json").read_text())


def _session(org):
    from runbook.salesforce import connect_local

    return connect_local(Path(org.state_dir))


def test_whole_setup_through_the_forms_in_jupyterlab(lab, local_org, browser, screenshots):
    from playwright.sync_api import expect

    from runbook.localorg import ADMIN_USERNAME
    from runbook.salesforce import metadata, rest

    base, workdir = lab
    org = local_org
    timings = {}

    # Phase 1: Run All generates the pair; the form refuses 0 days inline, then rotates to a 730-day pair.
    started = time.perf_counter()
    with open_notebook(browser, base, "01_certificate.ipynb", screenshots) as nb:
        nb.run_all()
        generated = _record(workdir, "certificate")
        assert generated["action"] == "generated"
        form = nb.form("certificate")
        nb.fill(form, "valid_days", "0")
        expect(form.locator(".runbook-message-valid_days")).to_contain_text("valid_days=0 is not valid")
        expect(form.locator("button.runbook-apply")).to_be_disabled()
        nb.shot("01-certificate-invalid-field", form)
        nb.fill(form, "valid_days", "730")
        nb.tick(form, "rotate")
        expect(form.locator(".runbook-plan")).to_contain_text("Rotate: copy the current pair")
        state, status = nb.press(form, "apply")
        assert state == "done", status
        assert status.startswith("✓ Rotated: ")
        rotated = _record(workdir, "certificate")
        assert rotated["action"] == "rotated" and Path(rotated["backup"]).is_dir()
        assert rotated["sha256_fingerprint"] != generated["sha256_fingerprint"]
        expect(form.locator(".runbook-result")).to_contain_text(rotated["sha256_fingerprint"])
        expect(form.locator(".runbook-phase[data-phase=certificate][data-state=done]")).to_have_count(1)
        nb.shot("01-certificate-rotated", form)
    timings["01_certificate"] = time.perf_counter() - started

    # Phase 2: Run All creates the app with the new certificate; the form changes its email and description.
    started = time.perf_counter()
    with open_notebook(browser, base, "02_connected_app.ipynb", screenshots) as nb:
        nb.run_all()
        created = _record(workdir, "connected_app")
        assert created["action"] == "create" and created["certificate_fingerprint"] == rotated["sha256_fingerprint"]
        consumer_key = created["consumer_key"]
        form = nb.form("connected_app")
        nb.fill(form, "contact_email", "not-an-email")
        expect(form.locator(".runbook-message-contact_email")).to_contain_text("give an email address")
        nb.fill(form, "contact_email", "ci-team@example.com")
        nb.fill(form, "description", "Set up through the browser walkthrough")
        state, status = nb.press(form, "preview")
        assert state == "done", status
        expect(form.locator(".runbook-plan")).to_contain_text("Update connected app Runbook_CI: 2 change(s)")
        state, status = nb.press(form, "apply")
        assert state == "done", status
        assert f"Updated (2 change(s)) connected app Runbook_CI — consumer key {consumer_key}" in status
        expect(form.locator(".runbook-result")).to_contain_text(f"Consumer key{consumer_key}")
        nb.shot("02-connected-app-updated", form)
        # Run All again: the parameters cell still has the old values and the cells below the form re-apply them;
        # the form says so with both values, keeps what it applied in its fields, and gives the lines to paste.
        nb.run_all()
        notice = form.locator(".runbook-drift")
        expect(notice).to_contain_text("contact_email: the form applied ci-team@example.com, the parameters cell "
                                       "says admin@example.com")
        nb.page.wait_for_function(RUN_ALL_FINISHED, timeout=60_000)
        assert metadata.read(_session(org), "ConnectedApp", "Runbook_CI")["contactEmail"] == "admin@example.com"
        nb.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        notice.locator("button.runbook-copy").click()
        expect(notice.locator("button.runbook-copy")).to_have_text("Copied")
        assert nb.page.evaluate("navigator.clipboard.readText()") == (
            'contact_email = "ci-team@example.com"\ndescription = "Set up through the browser walkthrough"')
        nb.shot("02-connected-app-run-all-after-apply", form)
        state, status = nb.press(form, "apply")  # the fields still hold what the form applied
        assert state == "done" and "Updated (2 change(s))" in status, status
        result = form.locator(".runbook-result")
        result.locator("button.runbook-copy").click()  # the one beside the consumer key
        assert nb.page.evaluate("navigator.clipboard.readText()") == consumer_key
        expect(result.locator("a.runbook-link")).to_have_text("View in Setup")
    app = metadata.read(_session(org), "ConnectedApp", "Runbook_CI")
    assert app["contactEmail"] == "ci-team@example.com"
    assert app["description"] == "Set up through the browser walkthrough [managed by sf-connected-app-runbook]"
    assert app["oauthConfig"]["consumerKey"] == consumer_key
    timings["02_connected_app"] = time.perf_counter() - started

    # Phase 3: Run All pre-authorizes System Administrator; the form adds a new permission set, assigned.
    started = time.perf_counter()
    with open_notebook(browser, base, "03_policies_and_access.ipynb", screenshots) as nb:
        nb.run_all()
        form = nb.form("access")
        nb.fill(form, "permission_sets", NEW_PERMISSION_SET)
        nb.tick(form, "create_permission_sets")
        nb.fill(form, "assign_users", ADMIN_USERNAME)
        state, status = nb.press(form, "preview")
        assert state == "done", status
        plan = form.locator(".runbook-plan")
        expect(plan).to_contain_text(f"create permission set {NEW_PERMISSION_SET}")
        expect(plan).to_contain_text(f"pre-authorize permission_set {NEW_PERMISSION_SET}")
        expect(plan).to_contain_text(f"assign permission set {NEW_PERMISSION_SET} to {ADMIN_USERNAME}")
        state, status = nb.press(form, "apply")
        assert state == "done", status
        assert status.startswith("✓ Applied 3 change(s) to Runbook_CI")
        expect(form.locator(".runbook-result")).to_contain_text(f"Pre-authorized permission sets{NEW_PERMISSION_SET}")
        nb.shot("03-access-permission-set", form)
    session = _session(org)
    sets = rest.query(session, f"SELECT Id FROM PermissionSet WHERE Name = '{NEW_PERMISSION_SET}'")
    assert len(sets) == 1
    app_id = rest.query(session, "SELECT Id FROM ConnectedApplication WHERE Name = 'Runbook CI'")[0]["Id"]
    grants = rest.query(session, f"SELECT ParentId FROM SetupEntityAccess WHERE SetupEntityId = '{app_id}'")
    assert sets[0]["Id"] in {g["ParentId"] for g in grants}
    assigned = rest.query(session, "SELECT AssigneeId FROM PermissionSetAssignment WHERE PermissionSetId = "
                                   f"'{sets[0]['Id']}'")
    assert len(assigned) == 1
    timings["03_policies_and_access"] = time.perf_counter() - started

    # Phase 4: a user outside the pre-authorized profiles is refused with the fix; the admin logs in.
    started = time.perf_counter()
    with open_notebook(browser, base, "04_verify.ipynb", screenshots) as nb:
        nb.run_all()
        form = nb.form("verify")
        nb.fill(form, "username", "dev@local.devhub")
        state, status = nb.press(form, "apply")
        assert state == "failed", status
        assert "invalid_app_access" in status and "pre-authorized" in status
        nb.shot("04-verify-refused", form)
        nb.fill(form, "username", "")
        state, status = nb.press(form, "apply")
        assert state == "done", status
        assert status == f"✓ JWT login as {ADMIN_USERNAME} works — consumer key {consumer_key}"
        result = form.locator(".runbook-result")
        expect(result).to_contain_text(f"Consumer key{consumer_key}")
        expect(result).to_contain_text(f"sf org login jwt --client-id {consumer_key}")
        nb.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        result.locator("tr", has_text="Log in with the CLI").locator("button.runbook-copy").click()
        assert nb.page.evaluate("navigator.clipboard.readText()") == _record(workdir, "verify")["sf_command"]
        expect(form.locator(".runbook-phase[data-state=done]")).to_have_count(4)
        nb.shot("04-verify-handoff", form)
    assert _record(workdir, "verify")["logins"][0]["username"] == ADMIN_USERNAME
    timings["04_verify"] = time.perf_counter() - started

    # Where you stand: 00_start_here reads the work folder and the org, and shows four phases done.
    started = time.perf_counter()
    with open_notebook(browser, base, "00_start_here.ipynb", screenshots) as nb:
        nb.run_all()
        overview = nb.page.locator(".runbook-overview")
        expect(overview.locator(".runbook-phase[data-state=done]")).to_have_count(4)
        expect(overview).to_contain_text("All four phases are done.")
        expect(overview).to_contain_text("Runbook CI (Runbook_CI)")
        nb.shot("00-overview-all-done", nb.page.locator("h2", has_text="Where you stand"))
    timings["00_start_here"] = time.perf_counter() - started
    (screenshots / "timings.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))


def test_web_flow_logs_in_through_the_login_page_in_chromium(local_org, browser, screenshots, tmp_path):
    """The local org's authorize page in a real browser: a refused password, a login, then its session cookie.

    Chromium does not know the local org's CA, so this one context skips the certificate check: the TLS
    itself is tested by the real clients elsewhere; here it is the page, the form and the cookie.
    """
    from conftest import free_callback_port
    from playwright.sync_api import expect

    from runbook.localorg import ADMIN_USERNAME
    from runbook.phases.certificate import certificate_pem, ensure_certificate
    from runbook.phases.webflow import run_web_flow
    from runbook.salesforce.metadata import create

    session = _session(local_org)
    key, callback = f"3MVG9Chromium{time.time_ns()}", f"http://localhost:{free_callback_port()}/OauthRedirect"
    create(session, "ConnectedApp", {
        "fullName": "Chromium_Web", "label": "Chromium Web", "contactEmail": "admin@example.com",
        "oauthConfig": {"callbackUrl": callback, "consumerKey": key, "scopes": ["Api", "Web"],
                        "certificate": certificate_pem(Path(ensure_certificate(workdir=tmp_path).cert_path)),
                        "isAdminApproved": False, "isConsumerSecretOptional": True, "isPkceRequired": True}})
    password = json.loads((local_org.state_dir / "admin-credentials.json").read_text())["password"]
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(15_000)

    def log_in(url: str) -> None:
        page.goto(url)
        expect(page).to_have_title("Login | Salesforce")
        expect(page.locator("#username")).to_have_value(ADMIN_USERNAME)  # login_hint fills it in, nothing more
        page.fill("#password", "not-the-password")
        page.click("#Login")
        expect(page.locator("#error")).to_contain_text("Please check your username and password.")
        page.screenshot(path=str(screenshots / "web-flow-login-refused.png"))
        page.fill("#password", password)
        page.click("#Login")
        expect(page.locator("body")).to_contain_text("Logged in: you can close this tab")

    def ride_the_session(url: str) -> None:
        page.goto(url)
        expect(page.locator("body")).to_contain_text("Logged in: you can close this tab")

    flow = {"consumer_key": key, "callback_url": callback, "login_url": session.login_url,
            "login_hint": ADMIN_USERNAME, "show": lambda _url: None, "timeout": 30}
    try:
        assert run_web_flow(browser=log_in, **flow).username == ADMIN_USERNAME
        cookie = next(c for c in context.cookies() if c["name"] == "sid")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
        assert run_web_flow(browser=ride_the_session, **flow).username == ADMIN_USERNAME
    finally:
        context.close()
