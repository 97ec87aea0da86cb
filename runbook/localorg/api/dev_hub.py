"""The Dev Hub's REST resources: ScratchOrgInfo and ActiveScratchOrg as sObjects, who may see them, ``/limits``.

``server`` routes these paths here ahead of ``rest``; everything else about them (the version check,
sessions, SOQL, describe, retrieve) is ``rest``'s, reached through ``rest.handle``:

- ``sobjects/ScratchOrgInfo`` POST: a signup (``scratch.ScratchOrgs.request``), ``201 {"id": "2SR…",
  "success": true, "errors": []}`` [O the standard create answer, which the CLI reads];
- ``sobjects/ScratchOrgInfo/{id}`` and ``sobjects/ActiveScratchOrg/{id}`` DELETE: the scratch org deleted,
  204 [O: what the CLI's delete expects];
- ``sobjects/ActiveScratchOrg`` POST: refused, the object has no create() [D];
- GET (summary, describe, a record) and SOQL over them: as ``rest`` answers, once the user may read the
  object; describe says ``createable`` / ``deletable`` for this user.

Who may: ``permissions``. A user without Read does not see the object at all: SOQL answers INVALID_TYPE
"sObject type '…' is not supported." (so the CLI's login takes such a hub for no Dev Hub: its
``SELECT Id FROM ScratchOrgInfo`` must answer below 400 [V authInfo.determineIfDevHub]) and the
sObject paths 404 NOT_FOUND [U]. With Read but not Create, an insert is CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY
"entity type cannot be inserted: Scratch Org Info" [U]; with Read but not Delete, a delete is
INSUFFICIENT_ACCESS_OR_READONLY "insufficient access rights on object id" [U wording; V the CLI maps this
code and INVALID_TYPE to "You do not have the appropriate permissions to delete a scratch org"].

A scratch org has neither object ([D] ScratchOrgInfo "is not available in sandboxes or scratch orgs"),
whoever asks: the same INVALID_TYPE, which the CLI needs to take the new org for no Dev Hub (§1.6b).
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug import Request, Response

from runbook.localorg.api import rest
from runbook.localorg.api.handler import Call, bearer_token
from runbook.localorg.model import ids, limits, permissions
from runbook.localorg.model.context import OrgContext, Session
from runbook.localorg.model.permissions import CREATE, DELETE, READ
from runbook.localorg.model.records import RecordError
from runbook.localorg.model.schema import sobject
from runbook.localorg.model.soql import compile_query, unsupported_type
from runbook.localorg.model.soql_syntax import SoqlError, queries

# what server.py routes here (after /services/data/vXX.X/), any letter case for the object names
PATHS = r"(?:limits|query|queryAll|tooling/query|sobjects/(?i:ScratchOrgInfo|ActiveScratchOrg)(?:/.*)?)"
_NO_ACCESS_ON_RECORD = "insufficient access rights on object id"  # [U]
_NO_VIEW_SETUP = ("You do not have the level of access necessary to perform the operation you requested. Please "
                  "contact the owner of the record or your administrator if access is necessary.")


def handle(ctx: OrgContext, request: Request, call: Call, version: str, tail: str) -> Response:
    """``/services/data/v<version>/<tail>`` for the paths in PATHS; ``rest`` answers whatever is not the Dev Hub's."""
    tail = (tail or "").strip("/")
    if not rest.served(version):
        return rest.handle(ctx, request, call, version, tail)
    parts = tail.split("/")
    try:
        if parts == ["limits"]:
            return _limits(ctx, request, call)
        if parts[0] != "sobjects":
            return _guarded_query(ctx, request, call, version, tail)
        return _sobject(ctx, request, call, version, tail, parts[1:])
    except rest.Refused as refused:
        return refused.response


def is_dev_hub(ctx: OrgContext) -> bool:
    """A scratch org's context has no scratch orgs of its own."""
    return ctx.scratch_orgs is not None


def visible(ctx: OrgContext, session: Session, sobject_name: str) -> bool:
    """Whether this org has ``sobject_name`` for this user (a guarded object: a Dev Hub, and Read)."""
    if sobject_name not in permissions.GUARDED:
        return True
    return is_dev_hub(ctx) and permissions.allowed(ctx.store, session, sobject_name, READ)


# --- /limits --------------------------------------------------------------------------------------

def _limits(ctx: OrgContext, request: Request, call: Call) -> Response:
    call.operation = "rest.limits"
    session = rest.require_session(ctx, request)
    if not permissions.can_view_setup(ctx.store, session):  # [D] needs View Setup and Configuration; [U] body
        return rest.json_response([{"message": _NO_VIEW_SETUP, "errorCode": "INSUFFICIENT_ACCESS"}], 403)
    if is_dev_hub(ctx):
        ctx.scratch_orgs.expire_due()
    return rest.json_response(limits.body(ctx.store, dev_hub=is_dev_hub(ctx)))


# --- SOQL -----------------------------------------------------------------------------------------

def _guarded_query(ctx: OrgContext, request: Request, call: Call, version: str, tail: str) -> Response:
    """A query reading a guarded object the user cannot see answers INVALID_TYPE, as for an unknown object."""
    session = ctx.session(bearer_token(request.headers.get("Authorization")))
    text = request.args.get("q") or ""
    if session is not None and text:
        try:
            plan = compile_query(text)
        except SoqlError:
            plan = None  # rest answers the syntax error
        for query in queries(plan.query) if plan else []:
            found = sobject(query.sobject)
            if found is not None and not visible(ctx, session, found.name):
                call.operation = "rest." + tail.replace("/", ".")
                refused = unsupported_type(text, query)
                return rest.json_response([{"message": refused.message, "errorCode": refused.code}], 400)
        if plan is not None and is_dev_hub(ctx) and {q.sobject.lower() for q in queries(plan.query)} & {
                name.lower() for name in permissions.GUARDED}:
            ctx.scratch_orgs.expire_due()
    return rest.handle(ctx, request, call, version, tail)


# --- sObject paths --------------------------------------------------------------------------------

def _sobject(ctx: OrgContext, request: Request, call: Call, version: str, tail: str,
             parts: list[str]) -> Response:
    schema = sobject(parts[0])
    call.operation = f"rest.{request.method.lower()}.{schema.name}"
    session = rest.require_session(ctx, request)
    if not visible(ctx, session, schema.name) or len(parts) > 2:
        return rest.json_response(rest.NOT_FOUND, 404)
    if len(parts) == 1 and request.method == "POST":
        return _insert(ctx, request, call, session, schema.name)
    if len(parts) == 2 and request.method == "DELETE":
        return _delete(ctx, call, session, schema.name, parts[1])
    if is_dev_hub(ctx):
        ctx.scratch_orgs.expire_due()
    response = rest.handle(ctx, request, call, version, tail)
    if parts[1:] == ["describe"] and response.status_code == 200:
        return _describe_for(ctx, session, schema.name, response)
    return response


def _insert(ctx: OrgContext, request: Request, call: Call, session: Session, name: str) -> Response:
    call.operation, call.is_write = f"rest.create.{name}", True
    if name != "ScratchOrgInfo" or not permissions.allowed(ctx.store, session, name, CREATE):
        label = sobject(name).label  # [D] ActiveScratchOrg has no create(); [U] the same text without Create
        return rest.json_response([{"message": f"entity type cannot be inserted: {label}",
                                    "errorCode": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "fields": []}], 400)
    try:
        data = json.loads(request.get_data() or b"null")
    except ValueError as exc:
        return rest.json_response([{"message": f"The request body is not valid JSON: {exc}",
                                    "errorCode": "JSON_PARSER_ERROR"}], 400)
    if not isinstance(data, dict):
        return rest.json_response([{"message": "Cannot deserialize instance of sObject from a non-object value",
                                    "errorCode": "JSON_PARSER_ERROR"}], 400)
    try:
        record_id = ctx.scratch_orgs.request(session, data)
    except RecordError as error:
        return rest.json_response(error.body(), error.status)
    return rest.json_response({"id": record_id, "success": True, "errors": []}, 201)


def _delete(ctx: OrgContext, call: Call, session: Session, name: str, raw_id: str) -> Response:
    call.operation, call.is_write = f"rest.delete.{name}", True
    record_id = ids.normalize(raw_id)
    record = ctx.store.get(name, record_id) if record_id else None
    if record is None:
        return rest.json_response(rest.NOT_FOUND, 404)
    if not permissions.allowed(ctx.store, session, name, DELETE):
        return rest.json_response([{"message": _NO_ACCESS_ON_RECORD, "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY",
                                    "fields": []}], 400)
    info_id = record["Id"] if name == "ScratchOrgInfo" else record["ScratchOrgInfoId"]
    ctx.scratch_orgs.delete(info_id, by=session.user, remove_info=name == "ScratchOrgInfo")
    return Response(status=204)


def _describe_for(ctx: OrgContext, session: Session, name: str, response: Response) -> Response:
    """``rest``'s describe with this user's ``createable`` and ``deletable`` ([D] describe answers per user)."""
    body: dict[str, Any] = json.loads(response.get_data())
    body["createable"] = bool(body["createable"]) and permissions.allowed(ctx.store, session, name, CREATE)
    body["deletable"] = bool(body["deletable"]) and permissions.allowed(ctx.store, session, name, DELETE)
    return rest.json_response(body)
