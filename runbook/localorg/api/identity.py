"""The identity URL's and OpenID Connect userinfo's answers about a user, and the user an identity URL names."""

from __future__ import annotations

from typing import Any

from runbook.localorg.model import ids
from runbook.localorg.model.context import OrgContext, Session


def _urls(ctx: OrgContext, user_id: str) -> dict[str, str]:
    base, org = ctx.url, ctx.org_id15
    data = f"{base}/services/data/v{{version}}"
    return {"enterprise": f"{base}/services/Soap/c/{{version}}/{org}",
            "metadata": f"{base}/services/Soap/m/{{version}}/{org}",
            "partner": f"{base}/services/Soap/u/{{version}}/{org}",
            "rest": f"{data}/", "sobjects": f"{data}/sobjects/", "search": f"{data}/search/",
            "query": f"{data}/query/", "recent": f"{data}/recent/",
            "tooling_soap": f"{base}/services/Soap/T/{{version}}/{org}", "tooling_rest": f"{data}/tooling/",
            "profile": f"{base}/{user_id[:15]}", "users": f"{data}/chatter/users", "custom_domain": base}


def identity(ctx: OrgContext, user: dict[str, Any]) -> dict[str, Any]:
    """The identity URL's answer (``GET /id/<orgId>/<userId>``)."""
    return {"id": f"{ctx.url}/id/{ctx.org_id}/{user['Id']}", "asserted_user": True, "user_id": user["Id"],
            "organization_id": ctx.org_id, "username": user["Username"],
            "nick_name": user["Username"].split("@")[0], "display_name": user["Name"], "email": user["Email"],
            "email_verified": True, "first_name": user["FirstName"], "last_name": user["LastName"],
            "timezone": "GMT", "active": user["IsActive"], "user_type": "STANDARD", "language": "en_US",
            "locale": "en_US", "utcOffset": 0, "last_modified_date": user["LastModifiedDate"],
            "is_app_installed": True, "urls": _urls(ctx, user["Id"])}


def userinfo(ctx: OrgContext, session: Session) -> dict[str, Any]:
    """The OpenID Connect userinfo answer for the session's user."""
    user = session.user
    return {"sub": f"{ctx.url}/id/{ctx.org_id}/{user['Id']}", "user_id": user["Id"],
            "organization_id": ctx.org_id, "preferred_username": user["Username"],
            "nickname": user["Username"].split("@")[0], "name": user["Name"], "email": user["Email"],
            "email_verified": True, "given_name": user["FirstName"], "family_name": user["LastName"],
            "zoneinfo": "GMT", "active": user["IsActive"], "user_type": "STANDARD", "language": "en_US",
            "locale": "en_US", "utcOffset": 0, "updated_at": user["LastModifiedDate"],
            "is_app_installed": True, "urls": _urls(ctx, user["Id"])}


def identity_user(ctx: OrgContext, org_id: str, user_id: str) -> dict[str, Any] | None:
    """The user an identity URL names, if it is this org's."""
    if ids.normalize(org_id) != ctx.org_id:
        return None
    normalized = ids.normalize(user_id)
    return ctx.store.get("User", normalized) if normalized else None
