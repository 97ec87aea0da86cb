"""The secret scanner on crafted outputs: each kind of secret is found, what is shown on purpose is not.

The crafted files hold (throwaway) secrets on purpose, so the ``crafted`` fixture deletes them when a test
ends: a scan of the whole session's outputs must not find the scanner's own fixtures.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest
from click.testing import CliRunner
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from runbook.cli import main
from runbook.errors import OrgConnectionError
from runbook.phases.certificate import ensure_certificate
from runbook.salesforce import login
from runbook.salesforce.urls import without_userinfo
from runbook.scan import (
    known_secrets_from_file,
    looks_secret_name,
    scan_paths,
    scan_test_outputs,
    secret_parameter_names,
)

REPO = Path(__file__).parent.parent
ORG_ID = "00D5g000004XyZaEAK"[:15]
ACCESS_TOKEN = f"{ORG_ID}!AQ0AQH" + secrets.token_urlsafe(60)
REFRESH_TOKEN = "5Aep861" + secrets.token_urlsafe(60)
CONSUMER_KEY = "3MVG9" + secrets.token_urlsafe(60).replace("-", ".")
PASSWORD = "Adm1n-" + secrets.token_urlsafe(12)


@pytest.fixture
def crafted(tmp_path):
    folder = tmp_path / "crafted"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory):
    """A real key pair made by phase 1; deleted at the end so no test output keeps a private key."""
    work = tmp_path_factory.mktemp("scan-keys")
    info = ensure_certificate(workdir=work, app_name="Scan_Test")
    yield info
    shutil.rmtree(work)


def _jwt() -> str:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode({"iss": CONSUMER_KEY, "sub": "admin@local.devhub", "aud": "https://login.salesforce.com",
                       "exp": 2_000_000_000}, key, algorithm="RS256")


def _notebook(*cells, parameters: dict | None = None, widgets: dict | None = None) -> nbformat.NotebookNode:
    """An executed-notebook-like file: a parameters cell, papermill's injected cell and metadata, outputs."""
    parameters = parameters or {"org": "local", "workdir": "/tmp/work"}
    nb = new_notebook(cells=[
        new_code_cell('org = "local"\nworkdir = "work"\n', metadata={"tags": ["parameters"]}),
        new_code_cell("".join(f"{k} = {v!r}\n" for k, v in parameters.items()),
                      metadata={"tags": ["injected-parameters"]}),
        *cells,
    ])
    nb.metadata["papermill"] = {"parameters": parameters, "exception": None, "environment_variables": {}}
    if widgets:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2,
                                                                                "version_minor": 0,
                                                                                "state": widgets}}
    return nb


def _write(folder: Path, name: str, content) -> Path:
    path = folder / name
    if isinstance(content, nbformat.NotebookNode):
        nbformat.write(content, path)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _printed(text: str, **extra) -> nbformat.NotebookNode:
    """A code cell that printed ``text``."""
    return new_code_cell("print(x)", execution_count=3, outputs=[new_output("stream", name="stdout", text=text)],
                         **extra)


def _kinds(findings) -> set[str]:
    return {f.kind for f in findings}


def test_pem_private_key_printed_by_a_cell_is_found(crafted, key_pair):
    pem = Path(key_pair.key_path).read_text()
    path = _write(crafted, "01.ipynb", _notebook(_printed(pem)))
    findings = scan_paths([path])
    assert [(f.location, f.kind) for f in findings] == [("cell 2 output 0 text line 1", "private-key")]
    assert findings[0].excerpt == "-----BEGIN " + "PRIVATE KEY-----…"  # split: no key header in the repo


def test_key_body_without_its_pem_header_is_found_in_html_output(crafted, key_pair):
    body = "".join(Path(key_pair.key_path).read_text().splitlines()[1:-1])
    html = new_output("display_data", data={"text/html": f"<pre>{body}</pre>", "text/plain": "<pre>"})
    path = _write(crafted, "01.ipynb", _notebook(new_code_cell("show()", outputs=[html])))
    assert _kinds(scan_paths([path])) == {"private-key"}


def test_access_token_in_a_log_line_is_found_with_a_redacted_excerpt(crafted):
    path = _write(crafted, "run.log", f"INFO connected\nDEBUG session {ACCESS_TOKEN} for {ORG_ID}\n")
    findings = scan_paths([crafted])
    assert [(f.path, f.location, f.kind, f.excerpt) for f in findings] == \
        [(path, "line 2", "access-token", ACCESS_TOKEN[:4] + "…")]


def test_refresh_token_in_a_json_output_is_found_as_a_refresh_token(crafted):
    data = new_output("execute_result", execution_count=1,
                      data={"application/json": {"token_type": "Bearer", "refresh_token": REFRESH_TOKEN},
                            "text/plain": "{...}"})
    path = _write(crafted, "04.ipynb", _notebook(new_code_cell("tokens", outputs=[data])))
    findings = scan_paths([path])
    assert [(f.location, f.kind) for f in findings] == \
        [("cell 2 output 0 application/json.refresh_token line 1", "refresh-token")]


def test_jwt_assertion_in_a_coloured_traceback_is_found(crafted):
    error = new_output("error", ename="LoginError", evalue="invalid_grant",
                       traceback=["\x1b[0;31m---------------------------------------------------\x1b[0m",
                                  f"\x1b[0;32mexchange\x1b[0m(assertion=\x1b[0;34m'{_jwt()}'\x1b[0m)"])
    path = _write(crafted, "04.ipynb", _notebook(new_code_cell("verify()", outputs=[error])))
    assert [(f.location, f.kind) for f in scan_paths([path])] == [("cell 2 output 0 traceback line 2", "jwt")]


@pytest.mark.parametrize("line", [
    "Authorization: Bearer {t}",
    "headers={{'Authorization': 'Bearer {t}'}}",
    '"authorization": "OAuth {t}"',
])
def test_authorization_header_with_any_token_format_is_found(crafted, line):
    token = secrets.token_hex(20)  # not a Salesforce-shaped token: only the header gives it away
    _write(crafted, "retry.log", line.format(t=token) + "\n")
    findings = scan_paths([crafted])
    assert _kinds(findings) == {"authorization-header"}
    assert token not in str(findings)


def test_soap_session_id_in_escaped_html_output_is_found(crafted):
    soap = f"&lt;loginResponse&gt;&lt;sessionId&gt;{ORG_ID}!short&lt;/sessionId&gt;&lt;/loginResponse&gt;"
    html = new_output("display_data", data={"text/html": soap, "text/plain": "..."})
    path = _write(crafted, "02.ipynb", _notebook(new_code_cell("soap", outputs=[html])))
    assert _kinds(scan_paths([path])) == {"session-id"}


@pytest.mark.parametrize(("name", "content"), [
    ("report.log", 'login failed: {{"username": "admin@local.devhub", "password": "{p}"}}\n'),
    ("report.txt", "SalesforceLogin(username='admin@local.devhub', password='{p}')\n"),
    ("report.json", '{{"phases": [{{"consumer_secret": "{p}"}}]}}'),
    ("report.yaml", "org:\n  username: admin@local.devhub\n  security_token: {p}\n"),
    ("report.md", "| url | https://x.my.salesforce.com/secur/frontdoor.jsp?sid=abc&access_token={p} |\n"),
    ("report.html", "<consumerSecret>{p}</consumerSecret>"),
    (".env", "SF_USERNAME=admin@local.devhub\nexport SF_PASSWORD={p}\n"),
])
def test_secret_named_field_with_a_literal_value_is_found(crafted, name, content):
    _write(crafted, name, content.format(p=PASSWORD))
    findings = scan_paths([crafted])
    assert _kinds(findings) == {"secret-field"}, findings
    assert PASSWORD not in str(findings)


def test_secret_looking_parameter_is_found_even_when_empty(crafted):
    path = _write(crafted, "run.ipynb", _notebook(parameters={"org": "password", "sf_password": ""}))
    assert [(f.location, f.kind, f.excerpt) for f in scan_paths([path])] == [
        ("metadata.papermill.parameters.sf_password", "secret-parameter", "sf_password"),
        ("cell 1 (injected-parameters) source", "secret-parameter", "sf_password"),
    ]


def test_typed_password_kept_in_widget_state_is_found(crafted):
    widgets = {"m1": {"model_name": "PasswordModel", "state": {"_model_name": "PasswordModel", "value": PASSWORD,
                                                               "description": "Password"}}}
    path = _write(crafted, "00.ipynb", _notebook(widgets=widgets))
    findings = scan_paths([path])
    assert [(f.location, f.kind) for f in findings] == [("metadata.widgets m1", "password-widget")]
    assert PASSWORD not in findings[0].excerpt


def test_known_secret_is_found_wherever_it_is(crafted):
    widgets = {"m2": {"model_name": "HTMLModel", "state": {"value": f"<b>logged in with {PASSWORD}</b>"}}}
    nb = _notebook(new_markdown_cell(f"the admin password is {PASSWORD}"), widgets=widgets)
    nb.cells[0].metadata["note"] = PASSWORD
    path = _write(crafted, "00.ipynb", nb)
    assert scan_paths([path]) == []  # a password has no format: only knowing it finds it
    findings = scan_paths([path], known_secrets=[PASSWORD])
    assert sorted(f.location.rsplit(" line", 1)[0] for f in findings) == [
        "cell 0 metadata.note", "cell 2 source",
        "metadata.widgets.application/vnd.jupyter.widget-state+json.state.m2.state.value"]
    assert _kinds(findings) == {"known-secret"}
    assert all(PASSWORD[:5] not in str(f) for f in findings)


def test_clean_executed_notebook_with_consumer_key_certificate_and_fingerprint_has_no_finding(crafted, key_pair):
    cert_pem = Path(key_pair.cert_path).read_text()
    cert_b64 = "".join(cert_pem.splitlines()[1:-1])
    record = {"consumer_key": CONSUMER_KEY, "certificate": cert_b64, "sha256_fingerprint": key_pair.sha256_fingerprint,
              "key_path": key_pair.key_path, "org_id": ORG_ID, "token_url": "https://127.0.0.1:8443/services/oauth2/token"}
    summary = (f"Consumer key:   {CONSUMER_KEY}\nJWT login as:   admin@local.devhub (org {ORG_ID})\n"
               f"CLI command:    sf org login jwt --client-id {CONSUMER_KEY} --jwt-key-file {key_pair.key_path}\n")
    cells = [
        new_markdown_cell("Setup → App Manager → Use digital signatures. `Authorization: Bearer <token>` is sent."),
        new_code_cell("certificate", outputs=[new_output("execute_result", execution_count=2, data={
            "text/plain": f"{cert_pem}\nSHA-256 {key_pair.sha256_fingerprint}",
            "text/html": f"<pre>{cert_pem}</pre><code>{key_pair.sha256_fingerprint}</code>",
            "application/json": record})]),
        _printed(summary + "SF_USERNAME=admin@local.devhub; the password is set for this kernel only (not shown).\n"
                 "password=<hidden> token=*** {'password': '<hidden>', 'security_token': ''}\n"),
        new_code_cell('print(os.environ["SF_PASSWORD"])\npassword = getpass("Password: ")\n'),
    ]
    parameters = {"org": "local", "workdir": "/tmp/work", "passphrase_env": "RUNBOOK_KEY_PASSPHRASE",
                  "key_path": key_pair.key_path, "token_file": "token.txt", "refresh_token_policy": "infinite"}
    widgets = {"m3": {"model_name": "TextModel", "state": {"value": CONSUMER_KEY, "description": "Consumer key"}},
               "m4": {"model_name": "PasswordModel", "state": {"value": ""}}}
    _write(crafted, "02.ipynb", _notebook(*cells, parameters=parameters, widgets=widgets))
    _write(crafted, "connected_app.json", record)
    _write(crafted, "summary.txt", summary)
    known = [*known_secrets_from_file(Path(key_pair.key_path)), PASSWORD]
    assert scan_paths([crafted], known_secrets=known) == []


def test_key_file_secrets_leave_out_the_lines_that_certificates_repeat(key_pair):
    # the private key holds the public modulus: those lines of its body are also in the certificate's base64
    lines = Path(key_pair.key_path).read_text().splitlines()[1:-1]
    cert_der = base64.b64decode("".join(Path(key_pair.cert_path).read_text().splitlines()[1:-1]))
    secret = known_secrets_from_file(Path(key_pair.key_path))
    public = [line for line in lines if base64.b64decode(line) in cert_der]
    assert public, "a 2048-bit modulus spans several body lines"
    assert set(secret) == set(lines) - set(public)
    assert lines[-3] in secret


@pytest.mark.parametrize("name", ["password", "sf_password", "SF_PASSWORD", "passwd", "passphrase", "key_passphrase",
                                  "client_secret", "consumerSecret", "access_token", "refreshToken", "security_token",
                                  "private_key", "privateKey", "private_key_pem", "credentials", "sessionId", "sid",
                                  "api_key", "apitoken"])
def test_secret_names(name):
    assert looks_secret_name(name)


@pytest.mark.parametrize("name", ["passphrase_env", "key_path", "token_file", "password_env", "private_key_path",
                                  "refresh_token_policy", "consumer_key", "token_url", "token_type", "cert_path",
                                  "username", "org", "inside", "passwordExpired", "isSecretRequiredForRefreshToken_x"])
def test_not_secret_names(name):
    assert not looks_secret_name(name)


def test_parameters_cell_rule_names_only_the_secret_looking_assignments():
    source = 'org = "password"  # not a secret: the login method\nsf_password = ""\npassphrase_env: str = "V"\n'
    assert secret_parameter_names(source) == ["sf_password"]
    assert secret_parameter_names("%load_ext x\napi_token = ''\n") == ["api_token"]


def test_walking_a_folder_skips_tool_folders_and_secret_stores_but_not_named_files(crafted):
    (crafted / ".venv").mkdir()
    _write(crafted / ".venv", "fixture.log", f"session {ACCESS_TOKEN}\n")
    store = _write(crafted, "admin-credentials.json", {"username": "admin@local.devhub", "password": PASSWORD})
    assert scan_paths([crafted], known_secrets=[PASSWORD]) == []
    assert _kinds(scan_paths([store])) == {"secret-field"}


def test_cli_prints_one_redacted_line_per_finding_and_exits_1(crafted):
    _write(crafted, "run.log", f"token {ACCESS_TOKEN}\nrefresh {REFRESH_TOKEN}\n")
    _write(crafted, "clean.md", "nothing here\n")
    result = CliRunner().invoke(main, ["scan", str(crafted)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"{crafted / 'run.log'}: line 1: access-token: {ACCESS_TOKEN[:4]}…",
                                          f"{crafted / 'run.log'}: line 2: refresh-token: {REFRESH_TOKEN[:4]}…"]
    assert "2 secret(s) found in 1 of 2 files" in result.stderr
    assert ACCESS_TOKEN[5:] not in result.output and REFRESH_TOKEN[5:] not in result.output


def test_cli_exits_0_and_counts_the_files_when_clean(crafted):
    _write(crafted, "run.log", f"Consumer key: {CONSUMER_KEY}\n")
    _write(crafted, "01.ipynb", _notebook())
    result = CliRunner().invoke(main, ["scan", str(crafted)])
    assert (result.exit_code, result.stdout) == (0, "no secrets found in 2 files\n")


def test_cli_secrets_from_credentials_json_and_key_file(crafted, key_pair):
    creds = _write(crafted, "admin-credentials.json", {"username": "admin@local.devhub", "password": PASSWORD})
    key_line = Path(key_pair.key_path).read_text().splitlines()[-3]  # private: not a modulus line
    outputs = crafted / "runs"
    outputs.mkdir()
    _write(outputs, "run.log", f"login as admin@local.devhub with {PASSWORD}\nkey {key_line}\n")
    assert CliRunner().invoke(main, ["scan", str(outputs)]).exit_code == 0
    result = CliRunner().invoke(main, ["scan", str(outputs), "--secrets-from", str(creds),
                                       "--secrets-from", key_pair.key_path])
    assert result.exit_code == 1
    assert [line.split(": ")[1:3] for line in result.stdout.splitlines()] == \
        [["line 1", "known-secret"], ["line 2", "known-secret"]]
    assert "admin@local.devhub" not in result.stdout  # the username in the same file is not a secret


def test_cli_refuses_a_secrets_file_it_cannot_read(crafted):
    other = _write(crafted, "notes.txt", "not json, not a key")
    result = CliRunner().invoke(main, ["scan", str(crafted), "--secrets-from", str(other)])
    assert result.exit_code == 2
    assert "neither JSON nor a PEM private key" in result.output


def test_scan_test_outputs_finds_the_secrets_of_the_orgs_and_keys_below_root(crafted, key_pair):
    state = crafted / "work" / "localorg"
    state.mkdir(parents=True)
    _write(state, "admin-credentials.json", {"username": "admin@local.devhub", "password": PASSWORD})
    keys = crafted / "work" / "keys"
    keys.mkdir()
    shutil.copy(key_pair.key_path, keys / "server.key")
    run = crafted / "runs" / "20261129-101500-000000"
    run.mkdir(parents=True)
    _write(run, "04_verify.ipynb", _notebook(_printed(f"logged in with {PASSWORD}")))
    key_line = Path(key_pair.key_path).read_text().splitlines()[-3]
    _write(run, "kernel.log", f"{key_line}\n")
    findings = scan_test_outputs(crafted)
    assert sorted((f.path.name, f.kind) for f in findings) == [("04_verify.ipynb", "known-secret"),
                                                              ("kernel.log", "known-secret")]


def test_real_executed_phase_1_notebook_is_clean_until_a_cell_prints_the_key(crafted):
    output = crafted / "01_certificate.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "01_certificate.ipynb"), str(output), kernel_name="python3",
                               parameters={"workdir": str(crafted / "work")}, progress_bar=False, cwd=str(crafted))
    assert scan_test_outputs(crafted) == []
    nb = nbformat.read(output, as_version=4)
    nb.cells.append(_printed(Path(crafted / "work" / "keys" / "server.key").read_text().splitlines()[1]))
    nbformat.write(nb, output)
    assert [f.kind for f in scan_test_outputs(crafted)] == ["private-key"]


def test_authorization_header_in_parsed_json_is_found_across_key_and_value(crafted):
    token = secrets.token_hex(20)
    _write(crafted, "requests.json", {"request": {"headers": {"Authorization": f"Bearer {token}"}}})
    findings = scan_paths([crafted])
    assert [(f.location, f.kind) for f in findings] == [("request.headers.Authorization line 1",
                                                         "authorization-header")]


def test_walking_a_folder_reads_the_temp_key_an_interrupted_write_left(crafted, key_pair):
    keys = crafted / "keys"
    keys.mkdir()
    (keys / "server.key").write_text(Path(key_pair.key_path).read_text())  # where a key belongs: not scanned
    leftover = keys / ".server.key.4242.k3y7mp0q.tmp"
    leftover.write_text(Path(key_pair.key_path).read_text())
    assert [(f.path, f.kind) for f in scan_paths([crafted])] == [(leftover, "private-key")]


def _key_base64(key_pair) -> str:
    """The private key file in base64, as ``export-ci`` exports it (SF_JWT_KEY_BASE64)."""
    return base64.b64encode(Path(key_pair.key_path).read_bytes()).decode()


def _wrapped(text: str, width: int) -> str:
    return "\n".join(text[i:i + width] for i in range(0, len(text), width))


@pytest.mark.parametrize(("name", "layout"), [
    ("ci.env", "SF_JWT_KEY_BASE64={b64}\n"),  # export-ci --format env
    ("sf-jwt.github.env", '# gh secret set --env-file THIS_FILE\nSF_JWT_KEY_BASE64="{b64}"\n'),
    ("key.txt", "{b64}\n"),  # base64 -w0 server.key
    ("key.txt", "{wrapped76}\n"),  # base64 server.key
    ("run.log", "the key, in case CI needs it:\n{wrapped64}\ndone\n"),  # openssl base64, inside a log
    ("sf-jwt.gitlab.json", '[{{"key": "SF_JWT_KEY_BASE64", "value": "{b64}", "masked": true}}]'),
])
def test_base64_encoded_pem_key_is_found_on_one_line_or_wrapped(crafted, key_pair, name, layout):
    b64 = _key_base64(key_pair)
    _write(crafted, name, layout.format(b64=b64, wrapped76=_wrapped(b64, 76), wrapped64=_wrapped(b64, 64)))
    findings = scan_paths([crafted])
    assert [(f.kind, f.excerpt) for f in findings] == [("private-key", "LS0t… (base64 of a PEM private key)")]


def test_base64_encoded_pem_key_printed_by_a_cell_is_found(crafted, key_pair):
    path = _write(crafted, "04.ipynb", _notebook(_printed(f"export SF_JWT_KEY_BASE64={_key_base64(key_pair)}\n")))
    assert [(f.location, f.kind) for f in scan_paths([path])] == [("cell 2 output 0 text line 1", "private-key")]


def test_base64_encoded_certificate_and_public_key_are_not_keys(crafted, key_pair):
    cert = base64.b64encode(Path(key_pair.cert_path).read_bytes()).decode()
    _write(crafted, "ci.env", f"SF_CERT_BASE64={cert}\n")
    _write(crafted, "cert.txt", _wrapped(cert, 76) + "\n")
    assert scan_paths([crafted]) == []


@pytest.mark.parametrize("line", [
    "SF_PASSWORD={p}",
    "export SF_PASSWORD='{p}'",
    "env: SF_USERNAME=admin@local.devhub SF_PASSWORD={p} SF_LOGIN_URL=https://login.salesforce.com",
    "GITHUB_TOKEN={p}",
    "SF_SECURITY_TOKEN={p}",
    "client_secret={p}",
    "login failed: user=admin@local.devhub password={p}",
    "SF_JWT_KEY={p}",
    "STRIPE_SECRET_KEY={p}",
])
def test_secret_assignment_printed_by_a_cell_or_logged_is_found(crafted, line):
    text = line.format(p=PASSWORD) + "\n"
    _write(crafted, "02.ipynb", _notebook(_printed(text)))
    _write(crafted, "run.log", text)
    findings = scan_paths([crafted])
    assert [(f.path.name, f.location, f.kind) for f in findings] == [
        ("02.ipynb", "cell 2 output 0 text line 1", "secret-field"), ("run.log", "line 1", "secret-field")]
    assert PASSWORD not in str(findings)


@pytest.mark.parametrize("line", [
    f"SF_CONSUMER_KEY={CONSUMER_KEY}",  # public: App Manager shows it
    "SF_CONSUMER_KEY=3MVG…",
    "SF_PUBLIC_KEY=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
    "key_path=/x/server.key",
    "SF_PASSWORD=",
    "SF_PASSWORD=<hidden>",
    "SF_TOKEN=***",
    "API_KEY=[REDACTED]",
    "GITHUB_TOKEN=${{GITHUB_TOKEN}}",
    "SF_PASSWORD=$SF_PASSWORD",
    "MAX_TOKENS=100000",
    "sort_key=name_asc cache_key=abc123def",
    "refresh_token_policy=infinite token_type=Bearer passphrase_env=RUNBOOK_KEY_PASSPHRASE",
    "SF_USERNAME=admin@local.devhub SF_INSTANCE_URL=https://127.0.0.1:8443",
])
def test_harmless_assignments_stay_clean(crafted, line):
    _write(crafted, "02.ipynb", _notebook(_printed(line.format() + "\n")))
    _write(crafted, "run.log", line.format() + "\n")
    assert scan_paths([crafted]) == []


def test_assignments_in_code_and_tracebacks_are_expressions_not_secrets(crafted):
    source = ('login(password=creds["password"], security_token=token)\n'
              "return OrgSession(access_token=session_id, secret=self.consumer_secret, sent=bool(secret))\n")
    error = new_output("error", ename="OrgConnectionError", evalue="refused", traceback=source.splitlines())
    _write(crafted, "02.ipynb", _notebook(new_code_cell(source, outputs=[error])))
    _write(crafted, "kernel.log", "Traceback (most recent call last):\n" + source)
    assert scan_paths([crafted]) == []


@pytest.mark.parametrize(("name", "content"), [
    ("04.ipynb", "Login URL: https://admin:{p}@login.salesforce.com\n"),  # printed by a cell
    ("run.log", "git clone https://ci-bot:{p}@git.example.com/acme/app.git\n"),
    ("report.md", "| login_url | https://admin:{p}@acme.my.salesforce.com/ |\n"),
    ("org.json", '{{"url": "https://admin:{p}@127.0.0.1:8443"}}'),
    ("report.html", '<a href="https://ci:{p}@acme.my.salesforce.com/">Setup</a>'),
])
def test_credentials_inside_a_url_are_found(crafted, name, content):
    content = content.format(p=PASSWORD)
    _write(crafted, name, _notebook(_printed(content)) if name.endswith(".ipynb") else content)
    findings = scan_paths([crafted])
    assert _kinds(findings) == {"url-credentials"}, findings
    assert PASSWORD not in str(findings) and "@" in findings[0].excerpt


def test_a_short_url_password_is_found_too(crafted):
    _write(crafted, "run.log", "GET https://user:pw@host/path\n")
    assert [(f.kind, f.excerpt) for f in scan_paths([crafted])] == [("url-credentials", "https://u…:…@host")]


def test_urls_without_a_password_stay_clean(crafted):
    _write(crafted, "run.log", "\n".join([
        "https://login.salesforce.com/services/oauth2/token", "https://127.0.0.1:8443/services/data/v62.0/",
        "ssh://git@github.com/acme/app.git", "git@github.com:acme/app.git", "http://[::1]:8080/callback",
        "https://x-access-token:${GITHUB_TOKEN}@github.com/acme/app", "https://admin:***@host/", "https://u:<hidden>@h/",
        "postgres://user:password@localhost/db"]) + "\n")
    assert scan_paths([crafted]) == []


@pytest.mark.parametrize(("url", "shown"), [
    ("https://me:pw@login.salesforce.com", "https://login.salesforce.com"),
    ("https://me@acme.my.salesforce.com/services?x=1", "https://acme.my.salesforce.com/services?x=1"),
    ("https://a:b@c@127.0.0.1:8443/path@x", "https://127.0.0.1:8443/path@x"),
    ("https://login.salesforce.com/path@x", "https://login.salesforce.com/path@x"),
    ("", ""),
])
def test_without_userinfo_keeps_everything_but_the_credentials(url, shown):
    assert without_userinfo(url) == shown


def test_env_login_never_keeps_the_userinfo_of_sf_instance_url(monkeypatch, tmp_path):
    monkeypatch.setenv("SF_ACCESS_TOKEN", ACCESS_TOKEN)
    monkeypatch.setenv("SF_INSTANCE_URL", f"https://ci:{PASSWORD}@acme.my.salesforce.com/")
    session = login("env", workdir=tmp_path, api_version="62.0")
    assert (session.instance_url, session.login_url) == ("https://acme.my.salesforce.com",) * 2


def test_an_unreachable_login_url_is_named_and_logged_without_its_userinfo(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("SF_USERNAME", "admin@local.devhub")
    monkeypatch.setenv("SF_PASSWORD", PASSWORD)
    with pytest.raises(OrgConnectionError) as refused, pytest.warns(FutureWarning):
        login("password", workdir=tmp_path, api_version="62.0", login_url=f"https://ci:{PASSWORD}@127.0.0.1:9")
    assert "https://127.0.0.1:9 did not answer" in str(refused.value)
    assert "retrying" in caplog.text and "https://127.0.0.1:9/services/Soap" in caplog.text
    assert PASSWORD not in str(refused.value) + caplog.text
