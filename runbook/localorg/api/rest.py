"""The REST data API under /services/data: versions, SOQL query (data API and Tooling API, see ``tooling``),
sObject describe, create, get, delete, the Composite resource (``composite``), whose subrequests come
back through ``handle``, and Connect REST's OAuth resources under ``apps/`` (``connect_rest``).

Every call but the version list needs a live session with the ``api`` (or ``full``) scope; writes
need a System Administrator. Errors are JSON arrays ``[{"message", "errorCode", "fields"?}]``,
which simple-salesforce relies on (its 401 handling indexes ``[0]['errorCode']``).
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug import Request, Response

from runbook.localorg.api import composite, connect_rest, tooling
from runbook.localorg.api.handler import Call, bearer_token
from runbook.localorg.api.jsonbody import BadJson, read_json
from runbook.localorg.model import ids, records, soql
from runbook.localorg.model.context import OrgContext, Session
from runbook.localorg.model.records import RecordError
from runbook.localorg.model.schema import SOBJECTS, SObject, sobject
from runbook.localorg.model.soql_syntax import SoqlError

RELEASES = {"55.0": "Summer '22", "56.0": "Winter '23", "57.0": "Spring '23", "58.0": "Summer '23",
            "59.0": "Winter '24", "60.0": "Spring '24", "61.0": "Summer '24", "62.0": "Winter '25",
            "63.0": "Spring '25", "64.0": "Summer '25", "65.0": "Winter '26", "66.0": "Spring '26",
            "67.0": "Summer '26", "68.0": "Winter '27"}
# [D] SOAP API end-of-life policy: "Versions 31.0 through 68.0: Supported", 21.0-30.0 retired. Every
# API here (REST, Metadata and partner SOAP) answers exactly these. The version list shows only 55.0+,
# but older paths work, because the Salesforce CLI still asks v51.0 whether an org is a Dev Hub.
OLDEST_SERVED, NEWEST_SERVED = 31.0, 68.0
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]  # [O]
# [D] "If you request any resource ... from a retired API version, REST API returns the 410:GONE error
# code"; [U] the body.
_RETIRED = [{"errorCode": "GONE", "message": "This API version is retired and no longer available."}]
_NO_ACCESS = ("You do not have the level of access necessary to perform the operation you requested. Please "
              "contact the owner of the record or your administrator if access is necessary.")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json;charset=UTF-8")


def _error(status: int, code: str, message: str) -> Response:
    return json_response([{"message": message, "errorCode": code}], status)


class Refused(Exception):
    """A call refused before its resource is reached (no session, no scope, no access): ``response`` answers it."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def served(version: str) -> bool:
    """Whether the org answers API ``version`` ("62.0"), on REST and SOAP alike."""
    return OLDEST_SERVED <= float(version) <= NEWEST_SERVED


def versions(ctx: OrgContext, request: Request, call: Call) -> Response:
    """``GET /services/data``: no session needed, as on Salesforce."""
    call.operation = "rest.versions"
    return json_response([{"label": label, "url": f"/services/data/v{version}", "version": version}
                          for version, label in RELEASES.items()])


def require_session(ctx: OrgContext, request: Request, *, write: bool = False) -> Session:
    """The request's live session; Refused with 401 for none or one without the api scope, 403 for a write by
    a user who is no System Administrator."""
    session = ctx.session(bearer_token(request.headers.get("Authorization")))
    if session is None:
        response = _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        response.headers["WWW-Authenticate"] = "Token"
        raise Refused(response)
    if session.app_id is not None and not {"api", "full"} & set(session.scopes.split()):
        # An OAuth token without the api scope cannot call REST [D] ([U] message).
        raise Refused(_error(401, "INVALID_SESSION_ID",
                              "This session is not valid for use with the REST API"))
    if write and not session.is_admin:  # [U] wording
        raise Refused(_error(403, "INSUFFICIENT_ACCESS", _NO_ACCESS))
    return session


def handle(ctx: OrgContext, request: Request, call: Call, version: str, rest: str) -> Response:
    """Everything under ``/services/data/v<version>/``; ``rest`` is the path after it, without end slashes."""
    try:
        if not served(version):  # retired: 410 [D]; newer than any Salesforce serves: 404 [U]
            call.operation = "rest.unknown"
            return json_response(*((_RETIRED, 410) if float(version) < OLDEST_SERVED else (NOT_FOUND, 404)))
        parts = rest.split("/") if rest else []
        if not parts:
            call.operation = "rest.resources"
            return _resources(ctx, require_session(ctx, request), version)
        if parts in (["query"], ["queryAll"], ["tooling", "query"]):
            call.operation = "rest." + ".".join(parts)
            require_session(ctx, request)
            return _query(ctx, request, version, tooling_api=parts[0] == "tooling")
        if parts[0] == "apps":
            call.operation = "connect.unknown"
            session = require_session(ctx, request)
            return json_response(*connect_rest.answer(ctx, request, call, version, parts[1:], session))
        if parts[0] == "sobjects":
            return _sobjects(ctx, request, call, version, parts[1:])
        if parts == ["composite"]:
            call.operation = "rest.composite"
            require_session(ctx, request)
            return json_response(*composite.run(ctx, request, call, handle))
        call.operation = "rest.unknown"
        require_session(ctx, request)
        return json_response(NOT_FOUND, 404)
    except Refused as refused:
        return refused.response


def _resources(ctx: OrgContext, session: Session, version: str) -> Response:
    base = f"/services/data/v{version}"
    return json_response({"sobjects": f"{base}/sobjects", "query": f"{base}/query",
                          "queryAll": f"{base}/queryAll",
                          "identity": f"{ctx.url}/id/{ctx.org_id}/{session.user['Id']}"})


def _query(ctx: OrgContext, request: Request, version: str, *, tooling_api: bool = False) -> Response:
    text = request.args.get("q")
    if not text:
        return _error(400, "MALFORMED_QUERY", "A query string has to be specified")
    try:
        plan = soql.compile_query(text)
        if not tooling_api:
            tooling.check_data_api(text, plan)
        if request.args.get("columns", "").lower() == "true":
            return json_response(plan.columns())
        result = plan.run(ctx.store.records, version=version)
        return json_response(tooling.tooling_body(result, plan) if tooling_api else result)
    except SoqlError as error:
        return _error(400, error.code, error.message)


def _urls(schema: SObject, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{schema.name}"
    return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}


def _summary(schema: SObject, version: str) -> dict[str, Any]:
    return {"name": schema.name, "label": schema.label, "keyPrefix": schema.key_prefix, "custom": False,
            "createable": schema.createable, "deletable": schema.deletable, "updateable": False,
            "queryable": schema.data_queryable, "retrieveable": True, "urls": _urls(schema, version)}


def _describe(schema: SObject, version: str) -> dict[str, Any]:
    fields = [{"name": f.name, "label": f.name, "type": f.type,
               "referenceTo": [f.reference_to] if f.reference_to else [], "relationshipName": f.relationship,
               "createable": f.createable, "updateable": False, "nillable": f.nillable, "filterable": True,
               "sortable": True} for f in schema.fields]
    return {**_summary(schema, version), "fields": fields}


def _sobjects(ctx: OrgContext, request: Request, call: Call, version: str, parts: list[str]) -> Response:
    if not parts:
        call.operation = "rest.describeGlobal"
        require_session(ctx, request)
        return json_response({"encoding": "UTF-8", "maxBatchSize": 200,
                              "sobjects": [_summary(s, version) for s in SOBJECTS.values()]})
    schema = sobject(parts[0])
    call.operation = f"rest.{request.method.lower()}.{schema.name if schema else parts[0]}"
    if schema is None or len(parts) > 2:
        require_session(ctx, request)
        return json_response(NOT_FOUND, 404)
    if len(parts) == 2 and parts[1] == "describe":
        call.operation = f"rest.describe.{schema.name}"
        require_session(ctx, request)
        return json_response(_describe(schema, version))
    if len(parts) == 1:
        if request.method == "POST":
            return _create(ctx, request, call, schema)
        if request.method not in ("GET", "HEAD"):
            require_session(ctx, request)
            return _error(405, "METHOD_NOT_ALLOWED",
                          f"HTTP Method '{request.method}' not allowed. Allowed are HEAD,GET,POST")
        call.operation = f"rest.sobject.{schema.name}"
        require_session(ctx, request)
        return json_response({"objectDescribe": _summary(schema, version), "recentItems": []})
    return _record(ctx, request, call, schema, parts[1], version)


def _create(ctx: OrgContext, request: Request, call: Call, schema: SObject) -> Response:
    call.operation, call.is_write = f"rest.create.{schema.name}", True
    require_session(ctx, request, write=True)
    try:
        data = read_json(request.get_data())
    except BadJson as exc:
        return _error(400, "JSON_PARSER_ERROR", str(exc))
    if not isinstance(data, dict):
        return _error(400, "JSON_PARSER_ERROR",
                      "Cannot deserialize instance of sObject from a non-object value")
    try:
        record_id = records.create(ctx.store, schema.name, data)
    except RecordError as error:
        return json_response(error.body(), error.status)
    return json_response({"id": record_id, "success": True, "errors": []}, 201)


def _record(ctx: OrgContext, request: Request, call: Call, schema: SObject, raw_id: str,
            version: str) -> Response:
    record_id = ids.normalize(raw_id)
    if request.method == "DELETE":
        call.operation, call.is_write = f"rest.delete.{schema.name}", True
        require_session(ctx, request, write=True)
        if record_id is None or ctx.store.get(schema.name, record_id) is None:
            return json_response(NOT_FOUND, 404)
        try:
            records.delete(ctx.store, schema.name, record_id)
        except RecordError as error:
            return json_response(error.body(), error.status)
        return Response(status=204)
    if request.method == "PATCH":  # nothing the local org holds is updatable over REST
        call.operation, call.is_write = f"rest.update.{schema.name}", True
        require_session(ctx, request, write=True)
        return _error(400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                      f"entity type cannot be updated: {schema.label}")
    call.operation = f"rest.retrieve.{schema.name}"
    require_session(ctx, request)
    record = ctx.store.get(schema.name, record_id) if record_id else None
    if record is None:
        return json_response(NOT_FOUND, 404)
    wanted = [f.strip() for f in request.args.get("fields", "").split(",") if f.strip()]
    names = [schema.field(f).name for f in wanted if schema.field(f)] if wanted else list(record)
    url = f"/services/data/v{version}/sobjects/{schema.name}/{record_id}"
    body = {"attributes": {"type": schema.name, "url": url}}
    body.update({name: record[name] for name in names})
    return json_response(body)
