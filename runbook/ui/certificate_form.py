"""Phase 1's form: the key pair's location, size, validity and subject; Apply creates or checks it."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from html import escape

from runbook.ui.fields import check_field, choice_field, int_field, text_field
from runbook.ui.form import Outcome, PhaseForm, Step, overview_of, start_from, unless_batch


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
    from runbook.phases.certificate import plan_certificate_request
    from runbook.work.workdir import open_workdir

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


@unless_batch("certificate")
def certificate_form(ns: MutableMapping | None = None, **params) -> PhaseForm:
    """Phase 1's form: the key pair's location, size, validity and subject; Apply creates or checks it."""
    from runbook.phases.certificate import KEY_SIZES, plan_certificate_request

    start = start_from("certificate", ns, params)
    p = start.values
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
        from runbook.phases.certificate import ensure_certificate

        step("Creating or checking the key pair…")
        info = ensure_certificate(**values)
        status = f"{info.action.capitalize()}: {info.key_path} (certificate SHA-256 {info.sha256_fingerprint[:23]}…)"
        # a rotation is done once: the cells below (and a second Apply) now reuse the new pair
        return Outcome(info, status, {**values, "rotate": False, "certificate": info}, overview_of(values["workdir"]),
                       reset={"rotate": False})

    return PhaseForm(
        phase="certificate", title="Phase 1 — Certificate",
        intro="The key pair the JWT login is signed with. Leave the paths empty to generate (or reuse) a pair in "
              "the work folder.",
        fields=fields, check=lambda v: plan_certificate_request(**v) and None,
        preview=lambda v, _step: preview_certificate(**v), apply=apply, start=start, steps=1, ns=ns,
        apply_label="Create or check the pair", local_preview=True)
