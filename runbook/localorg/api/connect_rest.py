"""Connect REST's OAuth resources for External Client Apps: the apps, their consumers, a consumer's key and secret.

[D] Connect REST API (chatterapi) OAuth Usage and OAuth Credentials resources, read through sfdx-hardis's
``externalClientAppUtils.ts`` [V], which is how a tool reads a consumer key when a retrieve does not
show it:

- ``GET /services/data/vXX.X/apps/oauth/usage`` (59.0+) -> ``{"apps": [{"developerName", "identifier",
  "label"}], "currentPageUrl", "nextPageUrl"}``; ``page`` (from 0) and ``pageSize`` (default 100) [D].
  ``identifier`` is the ExternalClientApplication Id. [U] Every app with an OAuth consumer is listed; the
  260.0 docs say "apps that have OAuth usage data", so a real org may leave out an app nobody has
  logged in with yet: a tool can take the Id from a Tooling query instead.
- ``GET …/apps/oauth/credentials/{appId}`` (60.0+) -> ``{"consumers": [{"id", "key", "name", "url",
  "stagedCredentialsUrl" (65.0+)}]}``, never a secret; the consumer ``id`` is ``888…`` [O].
- ``GET …/apps/oauth/credentials/{appId}/{consumerId}?part=key|secret|keyandsecret`` (60.0+) -> the
  same fields with ``key`` and/or ``secret``: "If this parameter is excluded from the request, then the key
  is provided in the response. The secret value is returned only when specified in this parameter." [D]

Every one of them needs the org setting ``ExternalClientAppSettings.enableClientSecretInRestApiAccess``
(off on a fresh org, see ``org_settings``) and a user with the "External Client App Developer" and
"View Client Secret" permissions, which here means a System Administrator [U]. The refusals are 403s
in REST's ``[{"errorCode", "message"}]`` shape, worded so the substrings sfdx-hardis matches ("not
currently enabled", "not enabled for this user") are in them [V]; the codes and the rest of the text
are [U]. Staged credentials (``…/staged``) are not emulated: 404.
"""

from __future__ import annotations

from typing import Any

from werkzeug import Request, Response

from runbook.localorg.api import rest
from runbook.localorg.api.handler import Call
from runbook.localorg.model import external_client_apps, ids, org_settings
from runbook.localorg.model.context import OrgContext, Session

USAGE_SINCE, CREDENTIALS_SINCE, STAGED_URL_SINCE = 59.0, 60.0, 65.0
DEFAULT_PAGE_SIZE = 100
PARTS = ("key", "secret", "keyandsecret")
ORG_REFUSED_CODE = "FUNCTIONALITY_NOT_ENABLED"
ORG_REFUSED = ("Access to External Client App consumer secrets through the REST API is not currently enabled "
               "for this org. Turn on 'Allow access to External Client App consumer secrets via REST API' in "
               "External Client App Settings.")
USER_REFUSED_CODE = "INSUFFICIENT_ACCESS"
USER_REFUSED = ("Access to External Client App consumer secrets through the REST API is not enabled for this "
                "user. The user needs the External Client App Developer and View Client Secret permissions.")


def _refused(status: int, code: str, message: str) -> rest.Refused:
    """A refused Connect request: HTTP ``status`` and its ``[{"errorCode", "message"}]`` body."""
    return rest.Refused(rest.json_response([{"errorCode": code, "message": message}], status))


def _not_found() -> rest.Refused:
    return rest.Refused(rest.json_response(rest.NOT_FOUND, 404))


@rest.data_api
def oauth_usage(ctx: OrgContext, request: Request, call: Call, version: str) -> Response:
    """``apps/oauth/usage``: the apps with an OAuth consumer, a page of them."""
    call.operation = "connect.oauthUsage"
    _check(ctx, request, rest.require_session(ctx, request), version, USAGE_SINCE)
    return rest.json_response(_usage(ctx, request, version))


@rest.data_api
def oauth_credentials(ctx: OrgContext, request: Request, call: Call, version: str, app_id: str) -> Response:
    """``apps/oauth/credentials/<appId>``: the app's consumers, without a key or secret."""
    call.operation = "connect.oauthCredentials"
    _check(ctx, request, rest.require_session(ctx, request), version, CREDENTIALS_SINCE)
    app = ids.normalize(app_id)
    return rest.json_response({"consumers": [_consumer(ctx, consumer, app, version)
                                             for consumer in _consumers(ctx, app)]})


@rest.data_api
def oauth_consumer_credentials(ctx: OrgContext, request: Request, call: Call, version: str, app_id: str,
                               consumer_id: str) -> Response:
    """``apps/oauth/credentials/<appId>/<consumerId>``: one consumer, with its key and/or secret (``part``)."""
    call.operation = "connect.oauthConsumerCredentials"
    _check(ctx, request, rest.require_session(ctx, request), version, CREDENTIALS_SINCE)
    return rest.json_response(_credentials(ctx, request, version, ids.normalize(app_id), ids.normalize(consumer_id)))


@rest.data_api
def unknown(ctx: OrgContext, request: Request, call: Call, version: str, tail: str = "") -> Response:
    """Any other path under ``apps``: NOT_FOUND, to a caller with a session."""
    call.operation = "connect.unknown"
    rest.require_session(ctx, request)
    raise _not_found()


def _check(ctx: OrgContext, request: Request, session: Session, version: str, since: float) -> None:
    """Refuse what the version, the method, the org setting or the user's permissions do not allow."""
    if float(version) < since:  # [U] an older version has no such resource
        raise _not_found()
    if request.method not in ("GET", "HEAD"):  # [U] wording, as the sObject resources answer it
        raise _refused(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are GET")
    if not ctx.store.get_setting(org_settings.SECRET_IN_REST_API, False):
        raise _refused(403, ORG_REFUSED_CODE, ORG_REFUSED)
    if not session.is_admin:
        raise _refused(403, USER_REFUSED_CODE, USER_REFUSED)


def _page_arg(request: Request, name: str, default: int, least: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < least:  # [U] the code and wording
        raise _refused(400, "INVALID_PARAMETER_VALUE", f"Invalid value for {name}: {raw}")
    return int(raw)


def _usage(ctx: OrgContext, request: Request, version: str) -> dict[str, Any]:
    page = _page_arg(request, "page", 0, 0)
    size = _page_arg(request, "pageSize", DEFAULT_PAGE_SIZE, 1)
    apps = [row for row in ctx.store.records(external_client_apps.APP)
            if external_client_apps.consumer(ctx.store, row["Id"]) is not None]
    base = f"/services/data/v{version}/apps/oauth/usage"
    return {"apps": [{"developerName": row["DeveloperName"], "identifier": row["Id"], "label": row["MasterLabel"]}
                     for row in apps[page * size:(page + 1) * size]],
            "currentPageUrl": f"{base}?page={page}&pageSize={size}",
            "nextPageUrl": f"{base}?page={page + 1}&pageSize={size}"}


def _consumers(ctx: OrgContext, app_id: str | None) -> list[Any]:
    """The app's OAuth consumers (its global OAuth settings); an unknown app is a 404 [U]."""
    if app_id is None or ctx.store.get(external_client_apps.APP, app_id) is None:
        raise _not_found()
    consumer = external_client_apps.consumer(ctx.store, app_id)
    return [consumer] if consumer is not None and consumer.sobject_id else []


def _consumer(ctx: OrgContext, consumer: Any, app_id: str | None, version: str, *, key: bool = True,
              secret: bool = False) -> dict[str, Any]:
    """One App Oauth Credentials body: id, key and/or secret, name, url (and stagedCredentialsUrl from 65.0)."""
    app = ctx.store.get(external_client_apps.APP, app_id or "") or {}
    url = f"/services/data/v{version}/apps/oauth/credentials/{app_id}/{consumer.sobject_id}"
    body: dict[str, Any] = {"id": consumer.sobject_id}
    if key:
        body["key"] = consumer.consumer_key
    body["name"] = app.get("MasterLabel")
    if secret:
        body["secret"] = consumer.consumer_secret
    if float(version) >= STAGED_URL_SINCE:
        body["stagedCredentialsUrl"] = f"{url}/staged"
    body["url"] = url
    return body


def _credentials(ctx: OrgContext, request: Request, version: str, app_id: str | None,
                 consumer_id: str | None) -> dict[str, Any]:
    part = request.args.get("part") or "key"
    if part not in PARTS:  # [U] the code and wording
        raise _refused(400, "INVALID_PARAMETER_VALUE", f"Invalid value for part: {part}. Use one of: "
                           f"{', '.join(PARTS)}")
    found = [c for c in _consumers(ctx, app_id) if c.sobject_id == consumer_id]
    if not found:
        raise _not_found()
    return _consumer(ctx, found[0], app_id, version, key=part in ("key", "keyandsecret"),
                     secret=part in ("secret", "keyandsecret"))
