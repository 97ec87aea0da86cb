"""The form a phase gets: fields with inline validation, Preview, Apply, progress, status and result.

A phase module (``certificate_form``, ``connected_app_form``, ...) builds its fields from the notebook's
parameters and hands this module the phase's own check, preview and apply functions, the ones the notebook's
cells call, so a form and the cells agree. After an Apply, the values the form applied and its result
(``app``, ``access``, ...) are written back into the namespace it was given, so cells run afterwards agree
with what the form did. What it applied that the parameters cell does not say is also kept in the work
folder, for the next time the form is shown (``runbook.ui.applied``: Run All runs the parameters cell first).

In the kernels `runbook run` starts (``BATCH_ENV`` set) nobody can ever click a form, so a form function
returns a ``FormPlaceholder`` (one line naming the form) and ipywidgets is never imported there.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from runbook.errors import InputError, RunbookError
from runbook.phases.cards import CARD_STYLE, Link, as_html, card
from runbook.run.env import BATCH_ENV
from runbook.ui.applied import Drift, drift, notice_html, remember
from runbook.ui.fields import FAILED, FIELD_WIDTH, Field, w

log = logging.getLogger(__name__)

STATE_COLORS = {"ready": "inherit", "invalid": FAILED, "running": "#0969da", "done": "#1a7f37", "failed": FAILED}


# A form's steps get a ``step(text)`` callback: it moves the progress bar and says what is happening.
Step = Callable[[str], None]


@dataclass
class Outcome:
    """What an Apply produced: the object to show, the status line, and names for the notebook."""

    result: Any
    status: str
    names: dict[str, Any]
    overview: Any = None
    plan: Any = None  # the plan that was applied, shown in place of the preview
    reset: dict[str, Any] = field(default_factory=dict)  # field values to show after the Apply
    links: list[Link] = field(default_factory=list)  # shown under the result ("View in Setup")


@dataclass
class Start:
    """Where a form starts: the parameters cell's values, and what the form last applied otherwise (``applied``)."""

    cell: dict[str, Any]
    drift: list[Drift]

    @property
    def values(self) -> dict[str, Any]:
        """What the fields show: the cell's values, with what the form applied where the cell says otherwise."""
        return {**self.cell, **{d.name: d.applied for d in self.drift}}


class PhaseForm:
    """A phase's form: fields with inline validation, Preview, Apply, progress, status and result."""

    def __init__(self, *, phase: str, title: str, intro: str, fields: list[Field],
                 check: Callable[[dict], Any], preview: Callable[[dict, Step], Any],
                 apply: Callable[[dict, Step], Outcome], steps: int, ns: MutableMapping | None, start: Start,
                 apply_label: str = "Apply", local_preview: bool = False):
        self.phase, self.fields, self._cell = phase, {f.name: f for f in fields}, start.cell
        self._check, self._preview, self._apply = check, preview, apply
        self._ns, self._local_preview, self._quiet = ns, local_preview, False
        self.runs = 0  # Preview/Apply runs so far, shown as data-run on the status line
        self.header = w.HTML(f"{CARD_STYLE}<h3 style='margin:4px 0'>{escape(title)}</h3>"
                             f"<p style='margin:0 0 6px 0'>{intro}</p>")
        self.preview_button = w.Button(description="Preview plan", icon="eye", tooltip="Show what Apply would do",
                                       layout=w.Layout(width="auto"))
        self.apply_button = w.Button(description=apply_label, icon="check", button_style="primary",
                                     tooltip="Carry out the plan", layout=w.Layout(width="auto"))
        self.progress = w.IntProgress(value=0, min=0, max=steps, bar_style="info",
                                      layout=w.Layout(width=FIELD_WIDTH, display="none"))
        self.notice = w.HTML(notice_html(start.drift))  # the parameters cell differs from what was applied
        self.status = w.HTML()
        self.plan = w.HTML()
        self.result = w.HTML()
        for name, widget in (("notice", self.notice), ("preview", self.preview_button), ("apply", self.apply_button),
                             ("progress", self.progress), ("status", self.status), ("plan", self.plan),
                             ("result", self.result)):
            widget.add_class(f"runbook-{name}")
        self.preview_button.on_click(lambda _b: self.preview())
        self.apply_button.on_click(lambda _b: self.apply())
        for f in fields:
            f.widget.observe(lambda _change: self._quiet or self.validate(), names="value")
        self.box = w.VBox([self.header, self.notice, *(f.row() for f in fields),
                           w.HBox([self.preview_button, self.apply_button]),
                           self.progress, self.status, self.plan, self.result],
                          layout=w.Layout(border="1px solid #d0d7de", padding="8px 12px", margin="4px 0"))
        self.box.add_class("runbook-form")
        self.box.add_class(f"runbook-form-{phase}")
        self.validate()

    def values(self) -> dict[str, Any]:
        """The parameters as the fields hold them now."""
        return {name: f.value for name, f in self.fields.items()}

    def validate(self) -> bool:
        """Check the fields with the phase's own validation; put the message beside the field at fault."""
        for f in self.fields.values():
            f.show("")
        try:
            warnings = self._check(self.values()) or []
        except InputError as exc:
            self._blame(exc)
            self.apply_button.disabled = self.preview_button.disabled = True
            return False
        self.apply_button.disabled = self.preview_button.disabled = False
        note = "".join(f"<br><b>Warning:</b> {escape(x)}" for x in warnings)
        self._set_status(f"Ready: the fields are valid. <b>Preview plan</b> shows what "
                         f"<b>{escape(self.apply_button.description)}</b> would do." + note, "ready", html=True)
        if self._local_preview:
            self.preview()
        return True

    def _blame(self, exc: InputError) -> None:
        at_fault = self.fields.get(exc.field)
        if at_fault is not None:
            at_fault.show(str(exc))
            self._set_status(f"Fix the field marked in red ({exc.field}).", "invalid")
        else:
            self._set_status(f"✗ {exc}", "invalid")

    def _set_status(self, text: str, state: str, html: bool = False) -> None:
        """The status line; ``data-run`` counts Preview/Apply runs and ``data-state`` says how the last one went."""
        body = text if html else escape(text)
        self.status.value = (f"<div class='runbook-status-line' data-run='{self.runs}' data-state='{state}' "
                             f"style='color:{STATE_COLORS[state]};margin:4px 0'>{body}</div>")

    def _run(self, action: Callable[[Step], Any]) -> Any:
        """Run ``action`` with the buttons disabled and the progress bar moving; errors go to the status line."""
        self.runs += 1
        self.apply_button.disabled = self.preview_button.disabled = True
        self.progress.value, self.progress.bar_style = 0, "info"
        self.progress.layout.display = ""

        def step(text: str) -> None:
            self.progress.value = min(self.progress.value + 1, self.progress.max)
            self._set_status(f"⏳ {text}", "running")

        try:
            outcome = action(step)
        except RunbookError as exc:
            if isinstance(exc, InputError) and exc.field in self.fields:
                self.fields[exc.field].show(str(exc))
            self.progress.bar_style = "danger"
            self._set_status(f"✗ {exc}", "failed")
            return None
        except Exception as exc:  # a bug or an unexpected answer: show it here, keep the traceback in the log
            log.exception("the %s form failed", self.phase)
            self.progress.bar_style = "danger"
            self._set_status(f"✗ Unexpected {type(exc).__name__}: {exc}", "failed")
            return None
        finally:
            self.apply_button.disabled = self.preview_button.disabled = False
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        return outcome

    def preview(self) -> Any:
        """Show what Apply would do (phases 2 and 3 read the org for it; nothing is changed)."""
        values = self.values()
        if self._local_preview:
            try:
                plan = self._preview(values, lambda _t: None)
            except RunbookError as exc:
                self.plan.value = ""
                self._set_status(f"✗ {exc}", "failed")
                return None
        else:
            plan = self._run(lambda step: self._preview(values, step))
            if plan is None:
                return None
            self._set_status(f"Plan ready, nothing changed yet: {self.apply_button.description} carries it out.",
                             "done")
        self.plan.value = card(f"Plan, as of {dt.datetime.now():%H:%M:%S} (Preview plan refreshes it)", as_html(plan))
        return plan

    def apply(self) -> Outcome | None:
        """Carry out the phase with the current values; show the result; write the names back."""
        if not self.validate():
            return None
        values = self.values()

        def action(step: Step) -> Outcome:
            before = self._preview(values, lambda _t: None) if self._local_preview else None
            outcome = self._apply(values, step)
            outcome.plan = before if outcome.plan is None else outcome.plan
            return outcome

        outcome = self._run(action)
        if outcome is None:
            return None
        self._quiet = True  # fields the phase resets (rotate) change without re-validating over the result
        try:
            for name, value in outcome.reset.items():
                self.fields[name].widget.value = value
        finally:
            self._quiet = False
        if outcome.plan is not None:
            self.plan.value = card("Applied plan", as_html(outcome.plan))
        self._set_status(f"✓ {outcome.status}", "done")
        overview = as_html(outcome.overview) if outcome.overview is not None else ""
        links = "".join(as_html(link) for link in outcome.links)
        self.result.value = card("Result", as_html(outcome.result) + links) + overview
        if self._ns is not None:
            self._ns.update(outcome.names)
        self._remember({**values, **outcome.reset})
        return outcome

    def _remember(self, applied: dict[str, Any]) -> None:
        """Record what differs from the parameters cell, for the next showing (Run All reverts the kernel's)."""
        try:
            remember(self.phase, applied, self._cell)
        except OSError as exc:  # the phase is applied: a record that cannot be written must not hide it
            log.warning("the %s form could not record what it applied: %s", self.phase, exc)
        self.notice.value = notice_html(drift(self.phase, self._cell))

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = self.box._repr_mimebundle_(**kwargs)
        # the plain-text fallback (papermill's output, nbconvert) names the form instead of dumping widgets
        bundle["text/plain"] = _placeholder_text(self.phase)
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)


def _placeholder_text(phase: str) -> str:
    return f"[{phase} form: open this notebook in JupyterLab to use it]"


@dataclass
class FormPlaceholder:
    """What a form cell shows in a batch kernel: the form's name, no widgets (no frontend could show them)."""

    phase: str

    def _repr_mimebundle_(self, **kwargs) -> dict:
        return {"text/plain": _placeholder_text(self.phase)}


def unless_batch(phase: str):
    """Make a form function return a ``FormPlaceholder`` in a kernel the batch started (``BATCH_ENV``)."""
    def decorate(make: Callable[..., PhaseForm]) -> Callable[..., PhaseForm | FormPlaceholder]:
        @functools.wraps(make)
        def form(ns: MutableMapping | None = None, **params) -> PhaseForm | FormPlaceholder:
            if os.environ.get(BATCH_ENV) == "1":
                return FormPlaceholder(phase)
            return make(ns, **params)
        return form
    return decorate


def phase_defaults(phase: str) -> dict[str, Any]:
    """A phase's parameters and their defaults, as its notebook's parameters cell declares them (one source)."""
    from runbook.phases import phase_named
    from runbook.phases.parameters import phase_parameters

    return {name: p.default for name, p in phase_parameters(phase_named(phase)).items()}


def start_from(phase: str, ns: MutableMapping | None, overrides: dict[str, Any]) -> Start:
    """A form's start: the parameters cell's values (``cell_values``) and what the form last applied otherwise."""
    cell = cell_values(ns, overrides, phase_defaults(phase))
    return Start(cell, drift(phase, cell))


def cell_values(ns: MutableMapping | None, overrides: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the cell left them: its defaults, the notebook's variables, then keyword arguments."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        name = sorted(unknown)[0]
        raise InputError(name, overrides[name], f"the form takes: {', '.join(defaults)}", problem="unknown field")
    values = dict(defaults)
    values.update({k: ns[k] for k in defaults if ns is not None and k in ns})
    values.update(overrides)
    return values


def overview_of(workdir: str, session=None):
    """Where the four phases stand, for under a result; a failed read is said in words, never raised."""
    from runbook.phases.overview import phase_overview

    try:
        return phase_overview(workdir, session)
    except RunbookError as exc:  # the result is already applied: a failed overview must not hide it
        return f"Where you stand: could not be read ({exc})"


def connect_org(values: dict, step: Step):
    """The org session the phase's cells would open (``connect(org, workdir=..., api_version=...)``)."""
    from runbook.salesforce import connect

    step(f"Connecting to the org ({values['org']})…")
    return connect(values["org"], workdir=values["workdir"], api_version=values["api_version"])
