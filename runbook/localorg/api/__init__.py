"""The local org's wire: Salesforce's endpoints, each parsing its requests and writing Salesforce's answers.

OAuth (token, authorize, revoke, identity, userinfo), SOAP (partner ``login`` and the Metadata API, with the
file-based deploy and retrieve), the REST data API (query, sObjects, Composite, the Tooling API's query,
Connect REST's OAuth credentials) and the Dev Hub's REST resources. A handler takes the org's context
(``runbook.localorg.model``), the werkzeug request, the call-log entry it fills in and what its URL rule
matched; ``runbook.localorg.urls`` routes each path to one.
"""
