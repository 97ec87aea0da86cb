"""An emulated Salesforce Dev Hub org: a real HTTPS server on 127.0.0.1 with SQLite state.

It speaks the wire formats the runbook, simple-salesforce and the Salesforce CLI use: the OAuth JWT
bearer token endpoint (signatures verified against the app's certificate), identity and userinfo,
partner SOAP ``login``, the Metadata API (CRUD, list, file deploy and retrieve for ConnectedApp, the
External Client App types, ExternalClientAppSettings and the other Settings types), the REST data API
(SOQL query, sObject describe/create/read/delete, Users among the creates, Composite), the Tooling API's
query, and Connect REST's OAuth credentials.
As a Dev Hub it signs up scratch orgs (ScratchOrgInfo, ActiveScratchOrg, ``/limits``): each one a second
local org, which the CLI logs in to with the Dev Hub app's JWT or the signup's AuthCode, and to which it
deploys a scratch definition's ``settings``.

Laid out as moto lays out an emulated service:

- ``urls``: every endpoint as a rule of one werkzeug ``Map``, naming its handler, and the WSGI app that routes
  each request, injects faults (``faults``) and writes the call log;
- ``api/`` (the wire): parsing requests and writing Salesforce's answers and errors: ``oauth`` (+ ``oauth_jwt``,
  ``oauth_code``, ``oauth_refresh``, ``oauth_grant``, ``login_page``, ``identity``), ``soap`` (+ ``soapxml``,
  ``deploy``), ``rest`` (+ ``composite``, ``tooling``, ``connect_rest``, ``jsonbody``), ``dev_hub`` (the Dev Hub's
  REST resources), ``errors`` (what is answered before any handler), ``handler`` (what every handler shares);
- ``model/`` (the state and its rules, no HTTP): ``store`` (the only SQL), ``context`` (the org, its clock and
  sessions), ``schema`` (sObjects), ``ids``, ``seed``, ``credentials``, ``records``, ``permissions``, ``soql`` (+
  ``soql_syntax``, ``soql_like``), ``metadata`` (+ ``components``, ``connected_apps``, ``external_client_apps``,
  ``org_settings``, ``settings``: the other Settings types, from the WSDL), ``oauth_apps``, ``web_logins``,
  ``lockout``, and the Dev Hub's ``signup``, ``scratch`` (the scratch orgs' lifecycle) and ``limits``;
- at the top, neither: ``org`` (LocalOrg: state folder, lifecycle), ``server`` (werkzeug's server, and the one
  module built on its internals), ``tls`` and ``faults``.

Choices where Salesforce's behaviour is not known are marked "unverified" in the docstrings.
"""

from runbook.localorg.faults import Fault, FaultPlan
from runbook.localorg.model import ids as ids  # record ids (``ids.to_18``), which callers compare with
from runbook.localorg.model.seed import ADMIN_USERNAME, SEED_USERS, SeedUser
from runbook.localorg.model.store import ApiCall
from runbook.localorg.org import LocalOrg, serve_forever, served_org

__all__ = ["ADMIN_USERNAME", "SEED_USERS", "ApiCall", "Fault", "FaultPlan", "LocalOrg", "SeedUser", "serve_forever",
           "served_org"]
