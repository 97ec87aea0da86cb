"""URLs as the runbook shows and records them: without the ``user:password@`` a URL may carry.

A login URL, ``$SF_INSTANCE_URL`` or ``--instance-url`` typed as ``https://me:pw@login.salesforce.com`` would
otherwise reach the hand-off card, the ``sf org login jwt`` command, error messages, phase records and CI
variables. Salesforce never reads credentials from a URL (the JWT and the token carry them), so the runbook drops
the userinfo where such a URL comes in, and ``runbook scan`` reports any that reached an output
(``url-credentials``).
"""

from __future__ import annotations

import re

__all__ = ["without_userinfo"]

# the authority's userinfo ends at its last "@" before the path, query or fragment
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def without_userinfo(url: str) -> str:
    """``url`` with any ``user[:password]@`` removed (``https://me:pw@host/x`` -> ``https://host/x``); else as is."""
    return _USERINFO.sub(r"\g<scheme>", url, count=1)
