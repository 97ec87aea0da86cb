"""The REST data API under /services/data: versions, SOQL query (data API and Tooling API, see ``tooling``), and
sObject describe, create, get and delete. ``urls`` routes each resource to its handler here; the Composite
resource (``composite``), Connect REST's OAuth resources (``connect_rest``) and the Dev Hub's objects
(``dev_hub``) are resources of the same API, with handlers of their own.

Every resource under ``/services/data/v<version>`` answers a version no longer served with 410 and one newer
than any with 404, before anything else (``data_api``). Every call but the version list needs a live session
with the ``api`` (or ``full``) scope; writes need a System Administrator. Errors are JSON arrays
``[{"message", "errorCode", "fields"?}]``, which simple-salesforce relies on (its 401 handling indexes
``[0]['errorCode']``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from werkzeug import Request, Response

from runbook.localorg.api import tooling
from runbook.localorg.api.handler import Call, Handler, bearer_token
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


def data_api(handler: Handler) -> Handler:
    """``handler`` of a resource under ``/services/data/v<version>``: an unserved version is refused first, and a
    call ``Refused`` on the way answers its response."""
    @functools.wraps(handler)
    def serve(ctx: OrgContext, request: Request, call: Call, version: str, *args: Any, **values: Any) -> Response:
        if not served(version):  # retired: 410 [D]; newer than any Salesforce serves: 404 [U]
            call.operation = "rest.unknown"
            return json_response(*((_RETIRED, 410) if float(version) < OLDEST_SERVED else (NOT_FOUND, 404)))
        try:
            return handler(ctx, request, call, version, *args, **values)
        except Refused as refused:
            return refused.response
    return serve


@data_api
def resources(ctx: OrgContext, request: Request, call: Call, version: str) -> Response:
    """``/services/data/v<version>``: the resources of the version."""
    call.operation = "rest.resources"
    return _resources(ctx, require_session(ctx, request), version)


@data_api
def query(ctx: OrgContext, request: Request, call: Call, version: str, resource: str) -> Response:
    """``query``, ``queryAll`` and ``tooling/query`` (``resource``): ``?q=`` run, or its columns described."""
    call.operation = "rest." + resource.replace("/", ".")
    require_session(ctx, request)
    return _query(ctx, request, version, tooling_api=resource == "tooling/query")


@data_api
def unknown(ctx: OrgContext, request: Request, call: Call, version: str, tail: str = "") -> Response:
    """Any other path under the version: NOT_FOUND, to a caller with a session."""
    call.operation = "rest.unknown"
    require_session(ctx, request)
    return json_response(NOT_FOUND, 404)


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


@data_api
def describe_global(ctx: OrgContext, request: Request, call: Call, version: str) -> Response:
    """``sobjects``: every sObject the org serves, summarized."""
    call.operation = "rest.describeGlobal"
    require_session(ctx, request)
    return json_response({"encoding": "UTF-8", "maxBatchSize": 200,
                          "sobjects": [_summary(s, version) for s in SOBJECTS.values()]})


@data_api
def sobject_resource(ctx: OrgContext, request: Request, call: Call, version: str, name: str) -> Response:
    """``sobjects/<name>``: a create (POST), or the object's summary (GET, HEAD)."""
    schema = _named(ctx, request, call, name)
    if request.method == "POST":
        return _create(ctx, request, call, schema)
    if request.method not in ("GET", "HEAD"):
        require_session(ctx, request)
        return _error(405, "METHOD_NOT_ALLOWED",
                      f"HTTP Method '{request.method}' not allowed. Allowed are HEAD,GET,POST")
    call.operation = f"rest.sobject.{schema.name}"
    require_session(ctx, request)
    return json_response({"objectDescribe": _summary(schema, version), "recentItems": []})


@data_api
def describe(ctx: OrgContext, request: Request, call: Call, version: str, name: str) -> Response:
    """``sobjects/<name>/describe``: the object's fields."""
    schema = _named(ctx, request, call, name)
    call.operation = f"rest.describe.{schema.name}"
    require_session(ctx, request)
    return json_response(_describe(schema, version))


@data_api
def record(ctx: OrgContext, request: Request, call: Call, version: str, name: str, record_id: str) -> Response:
    """``sobjects/<name>/<id>``: the record read, or deleted (DELETE); no update (PATCH) is allowed."""
    return _record(ctx, request, call, _named(ctx, request, call, name), record_id, version)


@data_api
def beyond_record(ctx: OrgContext, request: Request, call: Call, version: str, name: str, tail: str) -> Response:
    """``sobjects/<name>/<id>/…``: no such resource."""
    _named(ctx, request, call, name)
    require_session(ctx, request)
    return json_response(NOT_FOUND, 404)


def _named(ctx: OrgContext, request: Request, call: Call, name: str) -> SObject:
    """The sObject ``name`` names, the call logged as ``rest.<method>.<name>`` until its handler says more;
    Refused with NOT_FOUND (to a caller with a session) when there is none."""
    schema = sobject(name)
    call.operation = f"rest.{request.method.lower()}.{schema.name if schema else name}"
    if schema is None:
        require_session(ctx, request)
        raise Refused(json_response(NOT_FOUND, 404))
    return schema


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
