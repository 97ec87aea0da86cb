"""Salesforce API names: the rules every developer name (apps, permission sets) follows."""

from __future__ import annotations

import re

from runbook.errors import InputError

API_NAME_MAX = 40


def check_api_name(name: str, field_name: str = "app_name") -> str:
    """``name`` when it is a valid API name: letter first, letters/digits/underscores, no __ or trailing _."""
    fix = "use letters, digits and single underscores, starting with a letter, e.g. Runbook_CI"
    if not isinstance(name, str) or not name:
        raise InputError(field_name, name, fix, problem="it is empty")
    if len(name) > API_NAME_MAX:
        raise InputError(field_name, name, f"use at most {API_NAME_MAX} characters")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise InputError(field_name, name, fix, problem="it has characters an API name cannot have")
    if "__" in name or name.endswith("_"):
        raise InputError(field_name, name, fix, problem="API names cannot contain '__' or end with '_'")
    return name
