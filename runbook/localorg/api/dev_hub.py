"""The Dev Hub's REST resources: ScratchOrgInfo and ActiveScratchOrg as sObjects, who may see them, ``/limits``.

``urls`` routes these paths here; everything else about them (the version check, sessions, SOQL, describe,
retrieve) is ``rest``'s, whose handlers these call:

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

``GET /services/data/vXX.X/limits`` answers ``{"ActiveScratchOrgs": {"Max", "Remaining"},
"DailyScratchOrgs": {"Max", "Remaining"}}`` [D dome-limits], and needs "View Setup and Configuration"
[D resources_limits]. [U] A real org lists many more limits (API requests, storage, ...): the local
org answers only what it enforces, and a scratch org (no Dev Hub) has no scratch org entries.
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
from runbook.localorg.model.schema import SObject, sobject
from runbook.localorg.model.soql import compile_query, unsupported_type
from runbook.localorg.model.soql_syntax import SoqlError, queries

_NO_ACCESS_ON_RECORD = "insufficient access rights on object id"  # [U]
_NO_VIEW_SETUP = ("You do not have the level of access necessary to perform the operation you requested. Please "
                  "contact the owner of the record or your administrator if access is necessary.")


def is_dev_hub(ctx: OrgContext) -> bool:
    """A scratch org's context has no scratch orgs of its own."""
    return ctx.scratch_orgs is not None


def visible(ctx: OrgContext, session: Session, sobject_name: str) -> bool:
    """Whether this org has ``sobject_name`` for this user (a guarded object: a Dev Hub, and Read)."""
    if sobject_name not in permissions.GUARDED:
        return True
    return is_dev_hub(ctx) and permissions.allowed(ctx.store, session, sobject_name, READ)


# --- /limits --------------------------------------------------------------------------------------

@rest.data_api
def limits_resource(ctx: OrgContext, request: Request, call: Call, version: str) -> Response:
    """``limits``: the Dev Hub's scratch org allocations, to a user who may view Setup."""
    call.operation = "rest.limits"
    session = rest.require_session(ctx, request)
    if not permissions.can_view_setup(ctx.store, session):  # [D] needs View Setup and Configuration; [U] body
        return rest.json_response([{"message": _NO_VIEW_SETUP, "errorCode": "INSUFFICIENT_ACCESS"}], 403)
    if not is_dev_hub(ctx):  # a scratch org has no scratch org allocations
        return rest.json_response({})
    ctx.scratch_orgs.expire_due()
    allocations = {"ActiveScratchOrgs": limits.active(ctx.store), "DailyScratchOrgs": limits.daily(ctx.store)}
    return rest.json_response({name: {"Max": allocation.max, "Remaining": allocation.remaining}
                               for name, allocation in allocations.items()})


# --- SOQL -----------------------------------------------------------------------------------------

@rest.data_api
def query(ctx: OrgContext, request: Request, call: Call, version: str, resource: str) -> Response:
    """``rest.query``, except that a query reading a guarded object the user cannot see answers INVALID_TYPE, as
    for an unknown object."""
    session = ctx.session(bearer_token(request.headers.get("Authorization")))
    text = request.args.get("q") or ""
    if session is not None and text:
        try:
            plan = compile_query(text)
        except SoqlError:
            plan = None  # rest answers the syntax error
        for found_query in queries(plan.query) if plan else []:
            found = sobject(found_query.sobject)
            if found is not None and not visible(ctx, session, found.name):
                call.operation = "rest." + resource.replace("/", ".")
                refused = unsupported_type(text, found_query)
                return rest.json_response([{"message": refused.message, "errorCode": refused.code}], 400)
        if plan is not None and is_dev_hub(ctx) and {q.sobject.lower() for q in queries(plan.query)} & {
                name.lower() for name in permissions.GUARDED}:
            ctx.scratch_orgs.expire_due()
    return rest.query(ctx, request, call, version, resource)


# --- sObject paths --------------------------------------------------------------------------------

@rest.data_api
def sobject_resource(ctx: OrgContext, request: Request, call: Call, version: str, name: str) -> Response:
    """``sobjects/<name>``: POST signs up a scratch org (ScratchOrgInfo); the rest is ``rest``'s."""
    schema, session = _guarded(ctx, request, call, name)
    if request.method == "POST":
        return _insert(ctx, request, call, session, schema.name)
    _expire_due(ctx)
    return rest.sobject_resource(ctx, request, call, version, name)


@rest.data_api
def describe(ctx: OrgContext, request: Request, call: Call, version: str, name: str) -> Response:
    """``sobjects/<name>/describe``: ``rest``'s, saying ``createable`` and ``deletable`` for this user."""
    schema, session = _guarded(ctx, request, call, name)
    _expire_due(ctx)
    response = rest.describe(ctx, request, call, version, name)
    return _describe_for(ctx, session, schema.name, response) if response.status_code == 200 else response


@rest.data_api
def record(ctx: OrgContext, request: Request, call: Call, version: str, name: str, record_id: str) -> Response:
    """``sobjects/<name>/<id>``: DELETE deletes the scratch org; the rest is ``rest``'s."""
    schema, session = _guarded(ctx, request, call, name)
    if request.method == "DELETE":
        return _delete(ctx, call, session, schema.name, record_id)
    _expire_due(ctx)
    return rest.record(ctx, request, call, version, name, record_id)


@rest.data_api
def beyond_record(ctx: OrgContext, request: Request, call: Call, version: str, name: str, tail: str) -> Response:
    """``sobjects/<name>/<id>/…``: no such resource."""
    _guarded(ctx, request, call, name)
    return rest.json_response(rest.NOT_FOUND, 404)


def _guarded(ctx: OrgContext, request: Request, call: Call, name: str) -> tuple[SObject, Session]:
    """The guarded object ``name`` names and the caller's session; Refused with NOT_FOUND when this org has no
    such object for the caller (``visible``)."""
    schema = sobject(name)
    call.operation = f"rest.{request.method.lower()}.{schema.name}"
    session = rest.require_session(ctx, request)
    if not visible(ctx, session, schema.name):
        raise rest.Refused(rest.json_response(rest.NOT_FOUND, 404))
    return schema, session


def _expire_due(ctx: OrgContext) -> None:
    """Before the Dev Hub's objects are read: scratch orgs past their ExpirationDate are gone."""
    if is_dev_hub(ctx):
        ctx.scratch_orgs.expire_due()


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
