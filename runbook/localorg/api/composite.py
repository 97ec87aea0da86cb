"""The REST Composite resource: several REST subrequests in one round trip, later ones using earlier answers.

``POST /services/data/vXX.X/composite`` takes ``{"allOrNone", "collateSubrequests", "compositeRequest":
[{"method", "url", "referenceId", "body"?, "httpHeaders"?}]}`` and answers 200 with
``{"compositeResponse": [{"body", "httpHeaders", "httpStatusCode", "referenceId"}]}`` in request order.
Each subrequest goes through the data API's handler for its path (``urls.SUBREQUEST_HANDLERS``: the Dev
Hub's rules are not applied there), with the outer request's session, so its answer and errors are that
call's. The composite is one call-log entry, ``rest.composite``, as Salesforce counts it as one API call. Its
``is_write`` is true iff a subrequest reached a write handler: the flag those calls would have logged, which
says a write was attempted (a refused create logs it too), not that it stuck.

- ``@{ref.path}`` in a url or in a string of a body (``@{ps.id}``, ``@{q.records[0].Id}``) becomes that
  value of an earlier successful subresponse. A reference to an unknown or failed subrequest, or to a
  path with no value, fails the subrequest that holds it: 400 ``PROCESSING_HALTED``
  ``Invalid reference specified. No value for q.records[0].Id found in q`` (text observed for a missing
  path in a response CumulusCI's composite tests record; for the other two cases unverified).
- ``allOrNone: true`` runs the subrequests in one store transaction. At the first failure it stops,
  rolls back every write, and answers the failed one with its own error and every other with 400
  ``PROCESSING_HALTED`` "The transaction was rolled back since another operation in the same
  transaction failed." (documented; the text as Salesforce's revoman and CumulusCI record it).
  The store's lock is held meanwhile, so other threads wait for the outcome instead of seeing writes
  that may vanish. ``allOrNone: false`` (the default) commits each subrequest on its own; ones that
  refer to a failed subrequest fail, the others run (documented).
- ``collateSubrequests`` is accepted and ignored: subrequests always run in request order.
- Limits (documented): 25 subrequests, of them 5 query operations (query, queryAll, their next pages).
  Over a limit nothing runs and the answer is 400 with a one-entry ``compositeResponse``:
  ``LIMIT_EXCEEDED`` "The request can’t contain more than 25 operations." with ``referenceId`` null
  (body observed in a production log, guardian/support-service-lambdas#766; the top-level 400 and the
  query-limit text are unverified).
- Unverified as well: a body the org cannot read as a composite request (not JSON, NaN or nesting
  deeper than ``jsonbody.MAX_DEPTH``, a subrequest without method, url or referenceId, a repeated
  referenceId, an inherited header such as Authorization in ``httpHeaders``, which the docs say fails the
  top-level request with 400, or a header that is no valid HTTP header: a list value, a name that is no
  token, a CR or LF in a value) is refused with 400 ``JSON_PARSER_ERROR``; a subrequest url outside
  ``/services/data/vXX.X/`` or naming the Composite resource itself answers that subrequest 404
  ``NOT_FOUND``; a create's subresponse carries ``Location`` (documented) built from the new id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug import Request, Response
from werkzeug.test import EnvironBuilder

from runbook.localorg.api import rest
from runbook.localorg.api.handler import Call
from runbook.localorg.api.jsonbody import BadJson, read_json
from runbook.localorg.model import ids
from runbook.localorg.model.context import OrgContext

# The REST handler a subrequest goes through: (ctx, request, call, version, path after the version).
Dispatch = Callable[[OrgContext, Request, Call, str, str], Response]

MAX_SUBREQUESTS, MAX_QUERIES = 25, 5
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # case-sensitive, as documented
ROLLED_BACK = "The transaction was rolled back since another operation in the same transaction failed."
_INHERITED_HEADERS = ("accept", "authorization", "content-type")
_QUERY_RESOURCES = ("query", "queryAll", "tooling/query")
_DATA_PATH = re.compile(r"/services/data/v(\d{2}\.\d)(?:/(.*))?")
_REFERENCE = re.compile(r"@\{(\w+)((?:\.\w+|\[\d+\])+)\}")
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token
_HEADER_VALUE_REFUSED = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but HTAB


class _Refused(Exception):
    """The whole composite request is refused before any subrequest runs."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class _Unresolved(Exception):
    """A ``@{...}`` reference that names no value; its message is the subrequest's error."""


@dataclass(frozen=True)
class Subrequest:
    """One entry of ``compositeRequest``, checked; ``body`` None means the subrequest sends none."""

    method: str
    url: str
    reference_id: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What one subrequest answered."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status >= 400

    def entry(self, reference_id: str) -> dict[str, Any]:
        return {"body": self.body, "httpHeaders": self.headers, "httpStatusCode": self.status,
                "referenceId": reference_id}


_HALTED = Outcome(400, [{"errorCode": "PROCESSING_HALTED", "message": ROLLED_BACK}])


class _RolledBack(Exception):
    """Leaves the all-or-none transaction (rolling it back) with the subrequest that failed."""

    def __init__(self, index: int, outcome: Outcome) -> None:
        super().__init__(index)
        self.index, self.outcome = index, outcome


@rest.data_api
def composite_resource(ctx: OrgContext, request: Request, call: Call, version: str, *, dispatch: Dispatch,
                       ) -> Response:
    """``composite``: the subrequests, each served through ``dispatch`` as the REST call it stands for."""
    call.operation = "rest.composite"
    rest.require_session(ctx, request)
    return rest.json_response(*run(ctx, request, call, dispatch))


def run(ctx: OrgContext, request: Request, call: Call, dispatch: Dispatch) -> tuple[Any, int]:
    """The JSON body and HTTP status answering a Composite request whose session was already checked."""
    if request.method != "POST":  # unverified: Salesforce lists the composite resources on GET
        return [{"errorCode": "METHOD_NOT_ALLOWED",
                 "message": f"HTTP Method '{request.method}' not allowed. Allowed are POST"}], 405
    try:
        all_or_none, subrequests = _parse(request.get_data())
        _check_limits(subrequests)
    except _Refused as refused:
        return refused.body, refused.status
    runner = _run_all_or_none if all_or_none else _run
    outcomes = runner(ctx, request, call, dispatch, subrequests)
    return {"compositeResponse": [outcome.entry(sub.reference_id)
                                  for sub, outcome in zip(subrequests, outcomes, strict=True)]}, 200


# --- reading the request ----------------------------------------------------------------------------


def _unreadable(message: str) -> _Refused:
    return _Refused(400, [{"errorCode": "JSON_PARSER_ERROR", "message": message}])


def _parse(data: bytes) -> tuple[bool, list[Subrequest]]:
    """``allOrNone`` and the subrequests, or _Refused naming what is wrong with the body."""
    try:
        payload = read_json(data)
    except BadJson as exc:
        raise _unreadable(str(exc)) from None
    items = payload.get("compositeRequest") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items:
        raise _unreadable("compositeRequest must be a non-empty array of subrequests")
    all_or_none = payload.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        raise _unreadable(f"allOrNone must be true or false, not {all_or_none!r}")
    subrequests = [_subrequest(item) for item in items]
    names = [sub.reference_id for sub in subrequests]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise _unreadable(f"Duplicate referenceId: {', '.join(repeated)}")
    return all_or_none, subrequests


def _subrequest(item: Any) -> Subrequest:
    if not isinstance(item, dict):
        raise _unreadable("Each subrequest must be a JSON object")
    method, url, reference_id = item.get("method"), item.get("url"), item.get("referenceId")
    if method not in METHODS:
        raise _unreadable(f"Subrequest method must be one of {', '.join(METHODS)}, not {method!r}")
    if not isinstance(url, str) or not url:
        raise _unreadable("Each subrequest needs a url")
    if not isinstance(reference_id, str) or not re.fullmatch(r"\w+", reference_id):
        raise _unreadable(f"Each subrequest needs a referenceId of letters, digits and _, not {reference_id!r}")
    headers = item.get("httpHeaders") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise _unreadable(f"httpHeaders of {reference_id} must map header names to strings")
    malformed = [name for name, value in headers.items()
                 if not _HEADER_NAME.fullmatch(name) or _HEADER_VALUE_REFUSED.search(value)]
    if malformed:  # a CRLF would split the header (werkzeug raised ValueError: a 500)
        raise _unreadable(f"httpHeaders of {reference_id}: {', '.join(map(repr, malformed))} is not a valid HTTP "
                          "header (a token for its name, no control characters such as CR or LF in its value)")
    inherited = [name for name in headers if name.lower() in _INHERITED_HEADERS]
    if inherited:
        raise _unreadable(f"Subrequest {reference_id} may not set {', '.join(inherited)}: subrequests "
                          "inherit Accept, Authorization and Content-Type from the composite request")
    return Subrequest(method, url, reference_id, item.get("body"), headers)


def _resource(url: str) -> tuple[str, str] | None:
    """The API version and the path after it of a url under /services/data/vXX.X/, else None."""
    match = _DATA_PATH.fullmatch(url.partition("?")[0].rstrip("/"))
    return (match.group(1), (match.group(2) or "").strip("/")) if match else None


def _is_query(url: str) -> bool:
    path = (_resource(url) or ("", ""))[1]
    return any(path == name or path.startswith(name + "/") for name in _QUERY_RESOURCES)


def _over_limit(message: str) -> _Refused:
    entry = {"body": [{"errorCode": "LIMIT_EXCEEDED", "message": message}], "httpHeaders": {},
             "httpStatusCode": 400, "referenceId": None}
    return _Refused(400, {"compositeResponse": [entry]})


def _check_limits(subrequests: list[Subrequest]) -> None:
    if len(subrequests) > MAX_SUBREQUESTS:
        raise _over_limit(f"The request can’t contain more than {MAX_SUBREQUESTS} operations.")
    if sum(_is_query(sub.url) for sub in subrequests) > MAX_QUERIES:
        raise _over_limit(f"The request can’t contain more than {MAX_QUERIES} query operations.")


# --- running the subrequests --------------------------------------------------------------------------


def _run(ctx: OrgContext, request: Request, call: Call, dispatch: Dispatch, subrequests: list[Subrequest],
         *, stop_at_failure: bool = False) -> list[Outcome]:
    """Each subrequest's outcome in order, each seeing the ones before (up to a failure if asked to stop)."""
    done: dict[str, Outcome] = {}
    for sub in subrequests:
        outcome = _execute(ctx, request, call, dispatch, sub, done)
        done[sub.reference_id] = outcome
        if stop_at_failure and outcome.failed:
            break
    return list(done.values())


def _run_all_or_none(ctx: OrgContext, request: Request, call: Call, dispatch: Dispatch,
                     subrequests: list[Subrequest]) -> list[Outcome]:
    """Every outcome, or, after the first failure, that failure among PROCESSING_HALTED, nothing written."""
    try:
        with ctx.store.transaction():
            outcomes = _run(ctx, request, call, dispatch, subrequests, stop_at_failure=True)
            if outcomes[-1].failed:
                raise _RolledBack(len(outcomes) - 1, outcomes[-1])
    except _RolledBack as rolled_back:
        return [rolled_back.outcome if i == rolled_back.index else _HALTED for i in range(len(subrequests))]
    return outcomes


def _execute(ctx: OrgContext, request: Request, call: Call, dispatch: Dispatch, sub: Subrequest,
             done: dict[str, Outcome]) -> Outcome:
    """Resolve ``sub``'s references, then serve it as the separate REST call it stands for."""
    try:
        url, body = _resolve(sub.url, done), _resolve(sub.body, done)
    except _Unresolved as unresolved:
        return Outcome(400, [{"errorCode": "PROCESSING_HALTED", "message": str(unresolved)}])
    resource = _resource(url) if url.startswith("/services/data/") else None
    if resource is None or resource[1].split("/")[0] == "composite":
        return Outcome(404, rest.NOT_FOUND)
    version, path = resource
    headers = {**sub.headers, "Authorization": request.headers.get("Authorization", "")}
    environ = EnvironBuilder(path=url, method=sub.method, headers=headers, content_type="application/json",
                             data=None if body is None else json.dumps(body)).get_environ()
    sub_call = Call()
    response = dispatch(ctx, Request(environ), sub_call, version, path)
    call.is_write = call.is_write or sub_call.is_write
    data = response.get_data()
    answer = json.loads(data) if data else None
    return Outcome(response.status_code, answer, _location(version, response.status_code, answer))


def _location(version: str, status: int, body: Any) -> dict[str, str]:
    """A create's subresponse names the new record's URL, as in Salesforce's examples."""
    record_id = body.get("id") if status == 201 and isinstance(body, dict) else None
    sobject = ids.sobject_of(record_id) if isinstance(record_id, str) else None
    return {"Location": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"} if sobject else {}


# --- references ----------------------------------------------------------------------------------------


def _resolve(value: Any, done: dict[str, Outcome]) -> Any:
    """``value`` with every ``@{ref.path}`` in its strings (at any depth) replaced by the value it names."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda match: _referenced(match, done), value)
    if isinstance(value, dict):
        return {key: _resolve(item, done) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, done) for item in value]
    return value


def _referenced(match: re.Match[str], done: dict[str, Outcome]) -> str:
    """The text a reference stands for: a scalar of an earlier successful subresponse (JSON for non-strings)."""
    reference_id, path = match.groups()
    outcome = done.get(reference_id)
    value = None if outcome is None or outcome.failed else outcome.body
    for key, index in _STEP.findall(path):
        value = _step(value, key, int(index) if index else None)
    if value is None or isinstance(value, dict | list):
        raise _Unresolved(f"Invalid reference specified. No value for {reference_id}{path} found in {reference_id}")
    return value if isinstance(value, str) else json.dumps(value)


def _step(value: Any, key: str, index: int | None) -> Any:
    """One ``.key`` or ``[index]`` further into a JSON value; None when there is nothing there."""
    if index is None:
        return value.get(key) if isinstance(value, dict) else None
    return value[index] if isinstance(value, list) and index < len(value) else None
