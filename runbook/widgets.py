"""Forms on top of the phase notebooks: fill the fields, preview the plan, click Apply.

One form per phase (``certificate_form``, ``connected_app_form``, ``access_form``, ``verify_form``),
pre-filled from the notebook's parameters: pass the notebook's ``globals()``, or the parameters as
keyword arguments. Each field is checked as you type by the same validation the phase uses, with the
message next to the field; Preview shows the plan, Apply carries it out with a status line and a
progress bar while the org is called, and the result appears as a card with where you stand below it.
The forms call exactly the functions the notebook cells call, so a form and the cells agree.

The forms are optional: showing one never calls the org and never waits for input. Under papermill
the cells below the form cell do the phase's work from the parameters, so a batch run is unchanged.
In the kernels `runbook run` starts (``BATCH_ENV`` set) nobody can ever click a form, so a form cell
leaves only a line naming the form, and ipywidgets is never imported there; under another papermill
or nbconvert run it leaves the widget in the output. After an Apply, the values the form applied and
its result (``app``, ``access``, ...) are written back into the namespace it was given, so cells run
afterwards agree with what the form did.

No field holds a secret: an encrypted key's passphrase is named by ``passphrase_env`` (the variable,
never its value), and passwords reach the kernel's environment through ``ask_credentials`` (getpass).
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import logging
import os
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from types import ModuleType
from typing import Any

from runbook.errors import InputError, RunbookError
from runbook.run.env import BATCH_ENV

log = logging.getLogger(__name__)



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
# Plans and results are the phases' own HTML tables: left-aligned, columns apart, inside the form's cards.
CARD_STYLE = ("<style>.runbook-card table{border-collapse:collapse}.runbook-card th,.runbook-card td"
              "{text-align:left;padding:2px 12px 2px 0;vertical-align:top}</style>")
FAILED = "#cf222e"
STATE_COLORS = {"ready": "inherit", "invalid": FAILED, "running": "#0969da", "done": "#1a7f37", "failed": FAILED}


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


def choice_field(name: str, label: str, value: Any, options: list) -> Field:
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    if value not in values:  # a parameter the form does not list: keep it selectable, validation speaks
        options = [*options, value]
    return _field(name, w.Dropdown(options=options, value=value, description=label))


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


def multi_field(name: str, label: str, value, options: list[str]) -> Field:
    chosen = [value] if isinstance(value, str) else list(value or ())
    options = list(dict.fromkeys([*options, *chosen]))
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


class PhaseForm:
    """A phase's form: fields with inline validation, Preview, Apply, progress, status and result."""

    def __init__(self, *, phase: str, title: str, intro: str, fields: list[Field],
                 check: Callable[[dict], Any], preview: Callable[[dict, Step], Any],
                 apply: Callable[[dict, Step], Outcome], steps: int, ns: MutableMapping | None,
                 apply_label: str = "Apply", local_preview: bool = False):
        self.phase, self.fields = phase, {f.name: f for f in fields}
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
        self.status = w.HTML()
        self.plan = w.HTML()
        self.result = w.HTML()
        for name, widget in (("preview", self.preview_button), ("apply", self.apply_button),
                             ("progress", self.progress), ("status", self.status), ("plan", self.plan),
                             ("result", self.result)):
            widget.add_class(f"runbook-{name}")
        self.preview_button.on_click(lambda _b: self.preview())
        self.apply_button.on_click(lambda _b: self.apply())
        for f in fields:
            f.widget.observe(lambda _change: self._quiet or self.validate(), names="value")
        self.box = w.VBox([self.header, *(f.row() for f in fields),
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
        self.plan.value = _card(f"Plan, as of {dt.datetime.now():%H:%M:%S} (Preview plan refreshes it)", _html(plan))
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
            self.plan.value = _card("Applied plan", _html(outcome.plan))
        self._set_status(f"✓ {outcome.status}", "done")
        overview = _html(outcome.overview) if outcome.overview is not None else ""
        self.result.value = _card("Result", _html(outcome.result)) + overview
        if self._ns is not None:
            self._ns.update(outcome.names)
        return outcome

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


def _unless_batch(phase: str):
    """Make a form function return a ``FormPlaceholder`` in a kernel the batch started (``BATCH_ENV``)."""
    def decorate(make: Callable[..., PhaseForm]) -> Callable[..., PhaseForm | FormPlaceholder]:
        @functools.wraps(make)
        def form(ns: MutableMapping | None = None, **params) -> PhaseForm | FormPlaceholder:
            if os.environ.get(BATCH_ENV) == "1":
                return FormPlaceholder(phase)
            return make(ns, **params)
        return form
    return decorate


def _html(obj: Any) -> str:
    if hasattr(obj, "_repr_html_"):
        return obj._repr_html_()
    return f"<pre>{escape(str(obj))}</pre>"


def _card(title: str, body: str) -> str:
    return (f"<div class='runbook-card' style='border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;"
            f"margin:6px 0'><div style='font-weight:600;margin-bottom:4px'>{escape(title)}</div>{body}</div>")


def _defaults(phase: str) -> dict[str, Any]:
    """A phase's parameters and their defaults, as its notebook's parameters cell declares them (one source)."""
    from runbook.parameters import phase_parameters
    from runbook.phases import phase_named

    return {name: p.default for name, p in phase_parameters(phase_named(phase)).items()}


def _params(ns: MutableMapping | None, overrides: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The form's starting values: defaults, then the notebook's variables, then explicit keyword arguments."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        name = sorted(unknown)[0]
        raise InputError(name, overrides[name], f"the form takes: {', '.join(defaults)}", problem="unknown field")
    values = dict(defaults)
    values.update({k: ns[k] for k in defaults if ns is not None and k in ns})
    values.update(overrides)
    return values


def _overview(workdir: str, session=None):
    from runbook.overview import phase_overview

    try:
        return phase_overview(workdir, session)
    except RunbookError as exc:  # the result is already applied: a failed overview must not hide it
        return f"Where you stand: could not be read ({exc})"


# ---------------------------------------------------------------- phase 1: certificate



@dataclass
class CertificatePreview:
    """What phase 1 would do with the current fields (files only, nothing written)."""

    lines: list[str]

    def _repr_html_(self) -> str:
        return "<ul style='margin:0'>" + "".join(f"<li>{escape(x)}</li>" for x in self.lines) + "</ul>"

    def __str__(self) -> str:
        return "\n".join(self.lines)


def preview_certificate(**params) -> CertificatePreview:
    """Phase 1's plan in words: generate, reuse, adopt your own pair, or rotate."""
    from runbook.certificate import plan_certificate_request
    from runbook.workdir import open_workdir

    req = plan_certificate_request(**params)
    new = (f"generate a new RSA {req.key_size} key at {req.key_path} (mode 0600) and a self-signed certificate "
           f"'CN={req.common_name}' valid {req.valid_days} days at {req.cert_path}")
    if req.rotate:
        lines = [f"Rotate: copy the current pair to {req.key_path.parent / 'backup'}/<time>/, then {new}."]
    elif req.key_path.exists() and req.cert_path.exists():
        mine = req.key_path.resolve().is_relative_to(open_workdir(params.get("workdir", "work")).root)
        lines = [f"{'Reuse' if mine else 'Use your own'} pair: {req.key_path} and {req.cert_path}; "
                 "check they match, RSA ≥ 2048, valid now. Nothing is written.",
                 "Key size, validity and subject only apply to a new pair (tick rotate to make one)."]
    elif req.key_path.exists():
        lines = [f"Make a self-signed certificate for the existing key {req.key_path} at {req.cert_path}."]
    else:
        lines = [new[0].upper() + new[1:] + "."]
    return CertificatePreview(lines)


@_unless_batch("certificate")
def certificate_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 1's form: the key pair's location, size, validity and subject; Apply creates or checks it."""
    from runbook.certificate import KEY_SIZES, plan_certificate_request

    p = _params(ns, params, _defaults("certificate"))
    fields = [
        text_field("workdir", "Work folder", p["workdir"]),
        text_field("app_name", "App API name", p["app_name"]),
        text_field("key_path", "Your own private key", p["key_path"], "empty: <work folder>/keys/server.key"),
        text_field("cert_path", "Your own certificate", p["cert_path"], "empty: <work folder>/keys/server.crt"),
        choice_field("key_size", "Key size (RSA bits)", p["key_size"], list(KEY_SIZES)),
        int_field("valid_days", "Valid for (days)", p["valid_days"]),
        text_field("common_name", "Subject CN", p["common_name"], "empty: <app name> JWT"),
        text_field("passphrase_env", "Passphrase variable", p["passphrase_env"],
                   "NAME of an environment variable, never the passphrase"),
        check_field("rotate", "Rotate: back up the pair and make a new one", p["rotate"]),
    ]

    def apply(values: dict, step: Step) -> Outcome:
        from runbook.certificate import ensure_certificate

        step("Creating or checking the key pair…")
        info = ensure_certificate(**values)
        status = f"{info.action.capitalize()}: {info.key_path} (certificate SHA-256 {info.sha256_fingerprint[:23]}…)"
        # a rotation is done once: the cells below (and a second Apply) now reuse the new pair
        return Outcome(info, status, {**values, "rotate": False, "certificate": info}, _overview(values["workdir"]),
                       reset={"rotate": False})

    return PhaseForm(
        phase="certificate", title="Phase 1 — Certificate",
        intro="The key pair the JWT login is signed with. Leave the paths empty to generate (or reuse) a pair in "
              "the work folder.",
        fields=fields, check=lambda v: plan_certificate_request(**v) and None,
        preview=lambda v, _step: preview_certificate(**v), apply=apply, steps=1, ns=ns,
        apply_label="Create or check the pair", local_preview=True)


# ---------------------------------------------------------------- phase 2: connected app

# as notebooks/02_connected_app.ipynb's parameters cell has them (tests/test_widgets.py compares); its apply is the
# form's own Preview / Apply


def _app_spec(values: dict):
    from runbook.connected_app import build_spec

    return build_spec(app_name=values["app_name"], label=values["label"], contact_email=values["contact_email"],
                      description=values["description"], callback_port=values["callback_port"],
                      scopes=values["scopes"], flows=values.get("flows", ["jwt"]),
                      app_kind=values.get("app_kind", "auto"),
                      consumer_secret_by=values.get("consumer_secret_by", "runbook"),
                      sfdx_project=values.get("sfdx_project", ""),
                      create_sfdx_project=values.get("create_sfdx_project", False),
                      cert_path=values["cert_path"], workdir=values["workdir"], adopt=values.get("adopt", False))


def _connect(values: dict, step: Step):
    from runbook.org import connect

    step(f"Connecting to the org ({values['org']})…")
    return connect(values["org"], workdir=values["workdir"], api_version=values["api_version"])


@_unless_batch("connected_app")
def connected_app_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 2's form: App Manager → New Connected App, as fields; Apply creates or updates the app."""
    from runbook.connected_app import APP_KINDS, SCOPES

    p = _params(ns, params, _defaults("connected_app"))
    fields = [
        org_field(p["org"]),
        text_field("workdir", "Work folder", p["workdir"]),
        text_field("api_version", "API version", p["api_version"]),
        text_field("app_name", "API name", p["app_name"]),
        text_field("label", "Connected App Name", p["label"], "empty: the API name with spaces"),
        text_field("contact_email", "Contact Email", p["contact_email"]),
        area_field("description", "Description", p["description"]),
        port_field("callback_port", "Callback URL port", p["callback_port"]),
        multi_field("scopes", "Selected OAuth Scopes", p["scopes"], list(SCOPES)),
        text_field("cert_path", "Digital signature cert", p["cert_path"], "empty: phase 1's certificate"),
        multi_field("flows", "OAuth flows", p["flows"], ["jwt", "web"]),
        choice_field("app_kind", "App kind", p["app_kind"], list(APP_KINDS)),
        choice_field("consumer_secret_by", "Consumer secret made by", p["consumer_secret_by"], ["runbook", "org"]),
        text_field("sfdx_project", "sfdx-project.json", p["sfdx_project"], "empty: leave project files alone"),
        check_field("create_sfdx_project", "Create a minimal sfdx-project.json if missing",
                    p["create_sfdx_project"]),
        check_field("adopt", "Take over an app of this name the runbook did not create", p["adopt"]),
    ]

    def plan(values: dict, step: Step):
        from runbook.connected_app import plan_connected_app

        spec = _app_spec(values)
        session = _connect(values, step)
        step(f"Reading {spec.full_name} from the org…")
        return session, spec, plan_connected_app(session, spec)

    def apply(values: dict, step: Step) -> Outcome:
        from runbook.connected_app import apply_connected_app

        session, spec, app_plan = plan(values, step)
        step({"create": "Creating the app…", "update": "Updating the app…"}.get(app_plan.action, "Reading back…"))
        app = apply_connected_app(session, app_plan, workdir=values["workdir"], apply=True)
        what = {"create": "Created", "update": f"Updated ({len(app_plan.changes)} change(s))",
                "none": "Up to date, nothing changed:"}[app_plan.action]
        status = f"{what} connected app {app.full_name} — consumer key {app.consumer_key}"
        names = {**values, "session": session, "spec": spec, "plan": app_plan, "app": app}
        return Outcome(app, status, names, _overview(values["workdir"], session), app_plan)

    return PhaseForm(
        phase="connected_app", title="Phase 2 — The connected app",
        intro="Setup → App Manager → New Connected App: name, contact email, <b>Enable OAuth Settings</b> with the "
              "callback URL and scopes, and <b>Use digital signatures</b> with phase 1's certificate.",
        fields=fields, check=lambda v: _app_spec(v) and None, preview=lambda v, step: plan(v, step)[2],
        apply=apply, steps=3, ns=ns, apply_label="Apply")


# ---------------------------------------------------------------- phase 3: policies and access

_ACCESS_SPEC_NAMES = ("app_name", "permitted_users", "ip_relaxation", "refresh_token_policy", "profiles",
                      "permission_sets", "create_permission_sets", "assign_users", "exclusive")


def _access_spec(values: dict):
    from runbook.access import build_access_spec

    return build_access_spec(**{k: values[k] for k in _ACCESS_SPEC_NAMES}, workdir=values.get("workdir"))


@_unless_batch("access")
def access_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 3's form: Manage → Edit Policies and Manage Profiles / Permission Sets; Apply converges."""
    from runbook.access import IP_RELAXATION

    p = _params(ns, params, _defaults("access"))
    fields = [
        org_field(p["org"]),
        text_field("workdir", "Work folder", p["workdir"]),
        text_field("api_version", "API version", p["api_version"]),
        text_field("app_name", "App API name", p["app_name"]),
        choice_field("permitted_users", "Permitted Users", p["permitted_users"],
                     [("Admin approved users are pre-authorized", "admin_approved"),
                      ("All users may self-authorize", "all_users")]),
        choice_field("ip_relaxation", "IP Relaxation", p["ip_relaxation"], list(IP_RELAXATION)),
        text_field("refresh_token_policy", "Refresh Token Policy", p["refresh_token_policy"],
                   "infinite, zero, specific_lifetime:N:DAYS"),
        list_field("profiles", "Profiles", p["profiles"]),
        list_field("permission_sets", "Permission sets", p["permission_sets"]),
        check_field("create_permission_sets", "Create missing permission sets", p["create_permission_sets"]),
        list_field("assign_users", "Assign them to users", p["assign_users"], "usernames, comma-separated"),
        check_field("exclusive", "Remove pre-authorizations not listed", p["exclusive"]),
    ]

    def plan(values: dict, step: Step):
        from runbook.access import plan_access

        spec = _access_spec(values)
        session = _connect(values, step)
        step(f"Reading {spec.app_name}'s policies, profiles and permission sets…")
        return session, spec, plan_access(session, spec)

    def apply(values: dict, step: Step) -> Outcome:
        from runbook.access import apply_access_plan

        session, spec, access_plan = plan(values, step)
        step("Applying and reading back…")
        access = apply_access_plan(session, spec, access_plan, workdir=values["workdir"], apply=True)
        status = (f"Applied {len(access.changes)} change(s) to {spec.app_name}" if access.changes
                  else f"{spec.app_name} already has these policies and pre-authorizations: nothing changed")
        names = {**values, "session": session, "access_spec": spec, "access_plan": access_plan, "access": access}
        return Outcome(access, status, names, _overview(values["workdir"], session), access_plan)

    return PhaseForm(
        phase="access", title="Phase 3 — Policies and access",
        intro="App Manager → the app → <b>Manage → Edit Policies</b> (Permitted Users, IP Relaxation, Refresh "
              "Token Policy), then <b>Manage Profiles</b> / <b>Manage Permission Sets</b>.",
        fields=fields, check=lambda v: list(_access_spec(v).warnings), preview=lambda v, step: plan(v, step)[2],
        apply=apply, steps=3, ns=ns)


# ---------------------------------------------------------------- phase 4: verification

# as notebooks/04_verify.ipynb's parameters cell has them (tests/test_widgets.py compares)


@dataclass
class VerifyPreview:
    """What phase 4 will send: which key signs, for which app and user, to which token endpoint."""

    rows: list[tuple[str, str]]

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                       for k, v in self.rows)
        return f"<table>{body}</table>"


def preview_verify(*, workdir: str, username: str = "", usernames: list[str] | str = (), login_url: str = "",
                   audience: str = "", key_path: str = "", passphrase_env: str = "",
                   propagation_timeout: float = 900, web_flow: str = "auto", web_flow_timeout: float = 120,
                   **_ignored) -> VerifyPreview:
    """Phase 4's plan from the work folder's records, after phase 4's own checks (nothing is sent)."""
    from runbook.verify import check_inputs, check_login_url, default_audience, key_passphrase
    from runbook.workdir import open_workdir

    check_inputs(login_url=login_url, usernames=usernames, propagation_timeout=propagation_timeout,
                 web_flow=web_flow, web_flow_timeout=web_flow_timeout)
    wd = open_workdir(workdir)
    cert, app = wd.load("certificate"), wd.load("connected_app")
    if cert is None or app is None:
        raise InputError("workdir", str(wd.root), "run phases 1 and 2 first (01_certificate, 02_connected_app)")
    key = Path(key_path or cert["key_path"]).expanduser()
    if not key.is_file():
        raise InputError("key_path", str(key), "the key file does not exist: check the path, or rerun phase 1")
    key_passphrase(key, passphrase_env)
    users = [usernames] if isinstance(usernames, str) else list(usernames or ())
    url = check_login_url(login_url) or "(the org's login URL)"
    return VerifyPreview([
        ("Consumer key (iss)", app["consumer_key"]),
        ("Log in as (sub)", ", ".join(u for u in users if u) or username or "(the connected user)"),
        ("Token endpoint", f"{url}/services/oauth2/token"),
        ("Audience (aud)", audience or (default_audience(url) if login_url else "(from the login URL)")),
        ("Signed with", f"{key}{' (decrypted with $' + passphrase_env + ')' if passphrase_env else ''}")])


@_unless_batch("verify")
def verify_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 4's form: who logs in, where; Apply does a real JWT bearer exchange and shows the hand-off."""
    p = _params(ns, params, _defaults("verify"))
    fields = [
        org_field(p["org"]),
        text_field("workdir", "Work folder", p["workdir"]),
        text_field("api_version", "API version", p["api_version"]),
        list_field("usernames", "Log in as", p["usernames"], "usernames, comma-separated; empty: the default user"),
        text_field("username", "Default user", p["username"], "empty: the user the runbook connected as"),
        text_field("login_url", "Login URL", p["login_url"], "empty: the org's"),
        text_field("audience", "JWT audience", p["audience"], "empty: chosen from the login URL"),
        text_field("key_path", "Private key", p["key_path"], "empty: phase 1's key"),
        text_field("passphrase_env", "Passphrase variable", p["passphrase_env"],
                   "NAME of an environment variable, never the passphrase"),
        int_field("propagation_timeout", "Wait for a new app (s)", p["propagation_timeout"]),
        choice_field("web_flow", "Web server flow", p["web_flow"],
                     [("auto: when phase 2 enabled it, on the local org", "auto"),
                      ("on: wait for a browser login", "on"), ("off", "off")]),
        text_field("consumer_secret_file", "Consumer secret file", p["consumer_secret_file"],
                   "empty: the 0600 file phase 2 wrote; never the secret"),
        int_field("web_flow_timeout", "Wait for the browser (s)", p["web_flow_timeout"]),
        choice_field("prove_scratch_org", "Scratch-org proof", p["prove_scratch_org"],
                     [("auto: on the local org only", "auto"), ("on: spends one of the day's scratch orgs", "on"),
                      ("off", "off")]),
    ]

    def apply(values: dict, step: Step) -> Outcome:
        from runbook import scratch_proof
        from runbook.verify import verify_setup, verify_web_flow

        session = _connect(values, step)
        step(f"JWT bearer exchange as {', '.join(values['usernames']) or values['username'] or session.username}…")
        handoff = verify_setup(session, workdir=values["workdir"], username=values["username"],
                               usernames=values["usernames"], login_url=values["login_url"],
                               audience=values["audience"], key_path=values["key_path"],
                               propagation_timeout=values["propagation_timeout"],
                               passphrase_env=values["passphrase_env"])
        step("Web server flow…")
        handoff = verify_web_flow(session, handoff, workdir=values["workdir"], web_flow=values["web_flow"],
                                  consumer_secret_file=values["consumer_secret_file"],
                                  timeout=values["web_flow_timeout"])
        step("Scratch-org proof…")
        scratch_proof.prove_scratch_org(session, handoff, workdir=values["workdir"],
                                        mode=values["prove_scratch_org"])
        users = ", ".join(lr.username for lr in handoff.logins)
        status = f"JWT login as {users} works — consumer key {handoff.consumer_key}"
        return Outcome(handoff, status, {**values, "session": session, "handoff": handoff},
                       _overview(values["workdir"], session))

    return PhaseForm(
        phase="verify", title="Phase 4 — Verify and hand over",
        intro="What <code>sf org login jwt</code> would do: sign a JWT with phase 1's key and exchange it for a "
              "token as each user.",
        fields=fields, check=lambda v: preview_verify(**v) and None, preview=lambda v, _step: preview_verify(**v),
        apply=apply, steps=4, ns=ns, apply_label="Log in with JWT", local_preview=True)


# ---------------------------------------------------------------- credentials without a widget

def ask_credentials(org: str) -> None:
    """For ``org="password"`` with nothing in the environment: ask for the username, password and token.

    The password and security token are read with getpass (never echoed, never in a widget or an
    output) and kept in this kernel's ``os.environ`` only, where ``runbook.org`` reads them. Any other
    ``org``, or variables already set, ask nothing. Without a frontend (papermill) it prints how to
    set the variables instead of waiting.
    """
    from getpass import getpass

    from runbook.org import ENV_PASSWORD, ENV_SECURITY_TOKEN, ENV_USERNAME

    if org != "password" or (os.environ.get(ENV_USERNAME) and os.environ.get(ENV_PASSWORD)):
        return
    try:
        if not os.environ.get(ENV_USERNAME):
            os.environ[ENV_USERNAME] = input("Salesforce username: ").strip()
        os.environ[ENV_PASSWORD] = getpass("Password (not shown, not saved): ")
        os.environ[ENV_SECURITY_TOKEN] = getpass("Security token (empty if your IP is trusted): ")
    except Exception as exc:  # papermill/nbclient: the kernel has no frontend to ask (StdinNotImplementedError)
        if type(exc).__name__ != "StdinNotImplementedError":
            raise
        print(f"No frontend to ask for a password: export {ENV_USERNAME} and {ENV_PASSWORD} "
              f"(and {ENV_SECURITY_TOKEN}) before starting Jupyter or the batch.")
        return
    print(f"{ENV_USERNAME}={os.environ[ENV_USERNAME]}; the password is set for this kernel only (not shown).")
