"""Apps as the OAuth flows see them: the app a consumer key names once it has propagated, and what its web server
flow and refresh tokens demand.

A ConnectedApp keeps these in ``oauthConfig`` and ``oauthPolicy``; an External Client App in its global OAuth
settings (ExtlClntAppGlobalOauthSettings, the same field names as ``oauthConfig``) and its OAuth policies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runbook.localorg.model import external_client_apps, metadata
from runbook.localorg.model.components import OAuthApp, as_bool, child, text, texts
from runbook.localorg.model.context import OrgContext

_STORE_DATE = "%Y-%m-%dT%H:%M:%S.%f%z"  # store.now_text()


def known_app(ctx: OrgContext, consumer_key: str) -> OAuthApp | None:
    """The app with this consumer key once OAuth knows it; None for unknown keys and apps still propagating.

    [O] A new or changed app answers ``invalid_client_id`` for about 2–10 minutes on a real org (wire
    facts §1.6); the local org waits ``ctx.propagation_s`` seconds after the app's last save.
    """
    app = metadata.oauth_app_for_key(ctx.store, consumer_key) if consumer_key else None
    if app is None or not ctx.propagation_s:
        return app
    return app if time.time() - _last_change(ctx, consumer_key) >= ctx.propagation_s else None


def _last_change(ctx: OrgContext, consumer_key: str) -> float:
    """When the app holding ``consumer_key`` was last saved (POSIX seconds), as the store records it.

    [U] Every save counts, also one that changes nothing; for an External Client App, a save of the app
    or of any of its settings and policies components. Deleting a component is not a change here.
    """
    component = ctx.store.component_by_consumer_key(consumer_key)
    related = [component]
    if component is not None and component.parent:
        related.append(ctx.store.component(external_client_apps.APP, component.parent))
        related += [c for type_name in external_client_apps.SATELLITES
                    for c in ctx.store.components(type_name, parent=component.parent)]
    latest = max(c.last_modified_date for c in related if c is not None)
    return datetime.strptime(latest, _STORE_DATE).timestamp()


# --- the web server flow --------------------------------------------------------------------------

@dataclass(frozen=True)
class WebSettings:
    """An app's web server flow settings: callback URLs, consumer secret, and what the flow demands."""

    callbacks: tuple[str, ...]
    secret: str | None = field(repr=False)
    secret_optional: bool
    pkce_required: bool


def web_settings(ctx: OrgContext, consumer_key: str) -> WebSettings:
    """ConnectedApp ``oauthConfig`` or ExtlClntAppGlobalOauthSettings: both hold these under the same names."""
    component = ctx.store.component_by_consumer_key(consumer_key)
    if component is None:
        return WebSettings((), None, False, False)
    oauth = child(component.definition, "oauthConfig") or component.definition
    urls = [u.strip() for value in texts(oauth, "callbackUrl") for u in value.splitlines() if u.strip()]
    return WebSettings(tuple(urls), component.consumer_secret, as_bool(text(oauth, "isConsumerSecretOptional")),
                       as_bool(text(oauth, "isPkceRequired")))


# --- refresh tokens -------------------------------------------------------------------------------

_UNIT_SECONDS = {"HOURS": 3600, "DAYS": 86400, "MONTHS": 30 * 86400}  # [U] a month as 30 days
# ExtlClntAppOauthConfigurablePolicies.refreshTokenPolicyType -> ConnectedApp oauthPolicy.refreshTokenPolicy [D]
_ECA_POLICY = {"Infinite": "infinite", "Zero": "zero", "SpecificLifetime": "specific_lifetime",
               "SpecificInactivity": "specific_inactivity"}


@dataclass(frozen=True)
class RefreshPolicy:
    """An app's refresh token policy: ``infinite``, ``zero``, or a lifetime / inactivity limit in seconds."""

    kind: str
    seconds: float = 0

    @classmethod
    def parse(cls, value: str | None) -> RefreshPolicy:
        """``infinite``, ``zero``, ``specific_lifetime:3:HOURS``, ``specific_inactivity:7:DAYS``; else infinite [U]."""
        kind, _, rest = (value or "infinite").strip().partition(":")
        count, _, unit = rest.partition(":")
        if kind in ("specific_lifetime", "specific_inactivity") and count.isdigit() and \
                unit.upper() in _UNIT_SECONDS:
            return cls(kind, int(count) * _UNIT_SECONDS[unit.upper()])
        return cls("zero") if kind == "zero" else cls("infinite")

    def refuses(self, token: dict[str, Any], now: float) -> bool:
        """Whether the policy refuses ``token`` (a refresh_token row) at ``now`` on the org's clock."""
        if self.kind == "zero":
            return True
        if self.kind == "specific_lifetime":
            return now >= token["granted_at"] + self.seconds
        if self.kind == "specific_inactivity":
            return now >= token["last_used_at"] + self.seconds
        return False


@dataclass(frozen=True)
class RefreshSettings:
    """What the refresh grant needs from an app: its secret, whether it is required, rotation, the policy."""

    secret: str | None = field(repr=False)
    secret_required: bool
    rotation: bool
    policy: RefreshPolicy


def refresh_settings(ctx: OrgContext, consumer_key: str) -> RefreshSettings:
    """ConnectedApp ``oauthConfig`` + ``oauthPolicy``, or the ECA's global OAuth settings + OAuth policies."""
    component = ctx.store.component_by_consumer_key(consumer_key)
    definition = component.definition if component else {}
    oauth = child(definition, "oauthConfig") or definition
    if component is not None and component.type == external_client_apps.GLOBAL_OAUTH:
        policies = next(iter(ctx.store.components(external_client_apps.OAUTH_POLICIES, parent=component.parent)),
                        None)
        plcy = policies.definition if policies else {}
        kind = _ECA_POLICY.get(text(plcy, "refreshTokenPolicyType") or "Infinite", "infinite")
        policy = RefreshPolicy.parse(f"{kind}:{text(plcy, 'refreshTokenValidityPeriod') or ''}:"
                                     f"{text(plcy, 'refreshTokenValidityUnit') or ''}")
    else:
        policy = RefreshPolicy.parse(text(child(definition, "oauthPolicy"), "refreshTokenPolicy"))
    return RefreshSettings(component.consumer_secret if component else None,
                           as_bool(text(oauth, "isSecretRequiredForRefreshToken"), default=True),
                           as_bool(text(oauth, "isRefreshTokenRotationEnabled")), policy)
