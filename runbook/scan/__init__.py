"""The secret scanner: finds private keys, passwords and tokens in what the runbook writes.

Papermill copies parameters into an executed notebook twice, outputs keep whatever a cell printed
or raised, widget state is saved into the notebook's metadata, and logs keep every line. This module
reads those outputs the way a reader of ``runs/`` would and reports each secret it finds, so the
batch, the tests and a user (``runbook scan PATH...``) can fail before a secret leaves the machine.

A finding never holds the secret itself: its excerpt shows at most the first four characters.

Detectors, each chosen so that what the runbook shows on purpose is not one of them:

=====================  ===============================================================================
private-key            a PEM ``-----BEGIN ... PRIVATE KEY-----`` block, the base64 DER of an RSA/EC
                       private key printed without its PEM header, or a whole PEM key file in base64
                       (``SF_JWT_KEY_BASE64=LS0t…``, ``base64 server.key``: one line or wrapped)
access-token           a Salesforce access/session token: ``00D`` + 12 characters + ``!`` + 40 or more
refresh-token          a Salesforce refresh token: ``5Aep861`` + 40 or more characters
jwt                    a signed JWT (a bearer assertion or an id token): ``eyJ….eyJ….signature``
authorization-header   ``Authorization: Bearer <value>`` (or ``OAuth <value>``), in any quoting
session-id             ``<sessionId>value</sessionId>``: a SOAP login's access token
url-credentials        a URL carrying a password: ``https://user:pw@host``
secret-field           a secret-named field with a literal value: ``"password": "…"``,
                       ``client_secret='…'``, ``<consumerSecret>…</consumerSecret>``, ``?access_token=…``,
                       ``SF_PASSWORD=…`` or ``GITHUB_TOKEN=…`` printed anywhere (and in a .env file),
                       an env-style ``…_KEY=…`` (``SF_JWT_KEY``, ``STRIPE_KEY``), a secret-named key in
                       JSON/YAML
secret-parameter       a notebook parameter whose name looks like a secret (even if empty)
password-widget        a saved ``Password`` widget holding a value
known-secret           any exact value the caller knows is secret (e.g. the local org's admin password)
=====================  ===============================================================================

Besides outputs, a folder walk reads the temp files an interrupted atomic write leaves beside its target
(``.server.key.<pid>.<random>.tmp``: a copy of the key that was being written).

Not secrets, and not reported: consumer keys (``3MVG9…``, ``SF_CONSUMER_KEY=…``), certificates and their
base64, SHA-256 fingerprints, org ids, variable names (``passphrase_env``), paths (``key_path=/x/server.key``),
empty values and placeholders (``<hidden>``, ``***``, ``[REDACTED]``, ``${VAR}``), numbers
(``MAX_TOKENS=4096``), and code: a ``NAME=value`` in a code cell or a traceback, or whose value reads as a
variable (``access_token=session_id``), is an expression, not a literal.
"""

from runbook.scan.files import iter_files, known_secrets_from_file, scan_paths, scan_test_outputs
from runbook.scan.text import Finding, looks_secret_name, scan_text, secret_parameter_names

__all__ = ["Finding", "iter_files", "known_secrets_from_file", "looks_secret_name", "scan_paths", "scan_test_outputs",
           "scan_text", "secret_parameter_names"]
