"""A Jupyter runbook that sets up a Salesforce Connected App (or External Client App) for a Dev Hub, end to end.

The public API, importable from ``runbook`` itself (each name is loaded on first use, so ``import runbook`` stays
cheap for the CLI and the kernels):

- the phases, as the notebooks call them: ``ensure_certificate`` (1), ``build_spec`` / ``plan_connected_app`` /
  ``apply_connected_app`` (2), ``build_access_spec`` / ``plan_access`` / ``apply_access_plan`` /
  ``ensure_ci_user`` (3), ``verify_setup`` / ``prove_scratch_org`` (4), ``show_overview`` (where you stand);
- running them: ``run_runbook`` (one org, the notebooks through papermill), ``PHASES`` (the registry);
- the org: ``connect`` and ``OrgSession``, ``Connector``;
- the errors (``runbook.errors``): ``RunbookError`` and its kinds, and ``ParameterProblems``.

Layers, one folder each: ``phases/`` (the registry and each phase's work), ``apps/`` (connected app and External
Client App behind one interface), ``salesforce/`` (sessions, REST, metadata), ``run/`` (batch, fleet, kernels),
``ui/`` (forms, cards, the lab), ``work/`` (the work folder and files), ``localorg/`` (the emulated Dev Hub).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("sf-connected-app-runbook")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0"

_EXPORTS = {
    "ensure_certificate": "runbook.phases.certificate",
    "build_spec": "runbook.phases.connected_app",
    "plan_connected_app": "runbook.phases.connected_app",
    "apply_connected_app": "runbook.phases.connected_app",
    "build_access_spec": "runbook.phases.access",
    "plan_access": "runbook.phases.access",
    "apply_access_plan": "runbook.phases.access",
    "ensure_ci_user": "runbook.phases.ci_user",
    "verify_setup": "runbook.phases.verify",
    "prove_scratch_org": "runbook.phases.scratch_proof",
    "show_overview": "runbook.phases.overview",
    "run_runbook": "runbook.run.batch",
    "PHASES": "runbook.phases.registry",
    "connect": "runbook.salesforce.connector",
    "Connector": "runbook.salesforce.connector",
    "OrgSession": "runbook.salesforce.session",
    "ParameterProblems": "runbook.errors",
    "RunbookError": "runbook.errors",
    "InputError": "runbook.errors",
    "OrgConnectionError": "runbook.errors",
    "SalesforceError": "runbook.errors",
    "LoginError": "runbook.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Load a public name from its module the first time it is asked for (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'runbook' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
