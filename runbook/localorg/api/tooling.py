"""SOQL through the data API and through the Tooling API: which objects each serves, and the Tooling shape.

[D] ``ExternalClientApplication`` lists describeSObjects(), retrieve() and search(), not query(): the
data API's ``query`` refuses it (in FROM, or in a semi-join) with INVALID_TYPE and Salesforce's
"sObject type '…' is not supported." text, and ``tooling/query`` answers it (its Id is what
SetupEntityAccess rows name [V Electivus]). [U] The Tooling API answers the local org's other objects
too, though a real org's Tooling API serves only some of them.

A Tooling query answers ``size``, ``totalSize``, ``done``, ``queryLocator`` (null: every answer is one
page), ``entityTypeName`` and ``records``, whose ``attributes.url`` are under ``/tooling/sobjects/`` [D
Tooling API query resource].
"""

from __future__ import annotations

from typing import Any

from runbook.localorg.model import soql
from runbook.localorg.model.schema import sobject
from runbook.localorg.model.soql_syntax import queries


def check_data_api(text: str, plan: soql.Plan) -> None:
    """Raise SoqlError(INVALID_TYPE) if the query reads an object the data API does not query."""
    for query in queries(plan.query):
        found = sobject(query.sobject)
        if found is not None and not found.data_queryable:
            raise soql.unsupported_type(text, query)


def _tooling_urls(value: Any) -> Any:
    """``value`` with every record's ``attributes.url`` moved under ``/tooling/``."""
    if isinstance(value, list):
        return [_tooling_urls(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {name: _tooling_urls(item) for name, item in value.items()}
    attributes = out.get("attributes")
    url = attributes.get("url") if isinstance(attributes, dict) else None
    if isinstance(url, str) and "/sobjects/" in url and "/tooling/" not in url:
        out["attributes"] = {**attributes, "url": url.replace("/sobjects/", "/tooling/sobjects/", 1)}
    return out


def tooling_body(result: dict[str, Any], plan: soql.Plan) -> dict[str, Any]:
    """The data API query answer ``result`` in the Tooling API's shape."""
    records = _tooling_urls(result["records"])
    return {"size": result["totalSize"], "totalSize": result["totalSize"], "done": True, "queryLocator": None,
            "entityTypeName": plan.root.name, "records": records}
