"""A form's fields: one parameter each, its widget, the inline message beside it, and widget value → parameter.

ipywidgets is imported the first time a field is built (``w`` below), not when a form module is imported:
every kernel imports the forms, and a batch kernel never builds one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from types import ModuleType
from typing import Any


class _ImportedOnUse:
    """A module imported the first time one of its attributes is used (ipywidgets: 0.1 s in every kernel)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attr)


w: Any = _ImportedOnUse("ipywidgets")

LABEL_WIDTH = "210px"
FIELD_WIDTH = "560px"
FAILED = "#cf222e"


@dataclass
class Field:
    """One parameter in a form: its widget, the inline message beside it, and widget value → parameter."""

    name: str
    widget: w.ValueWidget
    message: w.HTML
    to_param: Callable[[Any], Any]

    @property
    def value(self) -> Any:
        return self.to_param(self.widget.value)

    def row(self) -> w.Box:
        return w.VBox([self.widget, self.message])

    def show(self, text: str) -> None:
        self.message.value = f"<span style='color:{FAILED}'>{escape(text)}</span>" if text else ""


def _field(name: str, widget: w.ValueWidget, to_param: Callable[[Any], Any] = lambda v: v) -> Field:
    widget.style = {"description_width": LABEL_WIDTH}
    widget.layout = w.Layout(width=FIELD_WIDTH)
    widget.add_class(f"runbook-field-{name}")
    message = w.HTML(layout=w.Layout(margin=f"0 0 0 {LABEL_WIDTH}", max_width="640px"))
    message.add_class(f"runbook-message-{name}")
    return Field(name, widget, message, to_param)


def text_field(name: str, label: str, value: str, placeholder: str = "") -> Field:
    return _field(name, w.Text(value=str(value or ""), description=label, placeholder=placeholder))


def area_field(name: str, label: str, value: str) -> Field:
    return _field(name, w.Textarea(value=str(value or ""), description=label, rows=2))


def int_field(name: str, label: str, value: int) -> Field:
    return _field(name, w.IntText(value=int(value), description=label))


def _with_values(options: list, values: list) -> list[tuple[str, Any]]:
    """``options`` as (label, value) pairs, plus each of ``values`` they lack (a parameter the form does not list
    stays selectable, and validation speaks). Pairs throughout: ipywidgets takes a mixed list as values only."""
    pairs = [o if isinstance(o, tuple) else (str(o), o) for o in options]
    listed = [v for _label, v in pairs]
    return [*pairs, *((str(v), v) for v in dict.fromkeys(values) if v not in listed)]


def choice_field(name: str, label: str, value: Any, options: list) -> Field:
    return _field(name, w.Dropdown(options=_with_values(options, [value]), value=value, description=label))


def check_field(name: str, label: str, value: bool) -> Field:
    return _field(name, w.Checkbox(value=bool(value), description=label, indent=True))


def combo_field(name: str, label: str, value: str, options: list[str], placeholder: str = "") -> Field:
    return _field(name, w.Combobox(value=str(value or ""), options=options, description=label,
                                   placeholder=placeholder, ensure_option=False))


def list_field(name: str, label: str, value, placeholder: str = "comma-separated") -> Field:
    """A list parameter as comma-separated text (profile and permission set names have no commas)."""
    items = [value] if isinstance(value, str) else list(value or ())
    return _field(name, w.Text(value=", ".join(map(str, items)), description=label, placeholder=placeholder),
                  lambda text: [part.strip() for part in text.split(",") if part.strip()])


def multi_field(name: str, label: str, value, options: list) -> Field:
    """A list parameter chosen from ``options`` (values, or (label, value) pairs)."""
    chosen = [value] if isinstance(value, str) else list(value or ())
    options = _with_values(options, chosen)
    widget = w.SelectMultiple(options=options, value=tuple(chosen), description=label, rows=min(6, len(options)))
    return _field(name, widget, list)


def port_field(name: str, label: str, value) -> Field:
    def to_param(text: str):
        text = text.strip()
        return int(text) if text.isdigit() else text

    return _field(name, w.Text(value=str(value), description=label, placeholder='1717 or "auto"'), to_param)


def org_field(value: str) -> Field:
    return combo_field("org", "Org", value, ["local", "env", "password"],
                       placeholder='"local", a Salesforce CLI alias, "env" or "password"')


def connection_fields(values: dict) -> list[Field]:
    """The fields every phase that talks to the org starts with: which org, the work folder, the API version."""
    return [org_field(values["org"]), text_field("workdir", "Work folder", values["workdir"]),
            text_field("api_version", "API version", values["api_version"])]
