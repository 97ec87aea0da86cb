"""Forms on top of the phase notebooks: fill the fields, preview the plan, click Apply; and the lab launcher.

One form per phase (``certificate_form``, ``connected_app_form``, ``access_form``, ``verify_form``),
pre-filled from the notebook's parameters: pass the notebook's ``globals()``, or the parameters as
keyword arguments. Each field is checked as you type by the same validation the phase uses, with the
message next to the field; Preview shows the plan, Apply carries it out with a status line and a
progress bar while the org is called, and the result appears as a card with where you stand below it.
The forms call exactly the functions the notebook cells call, so a form and the cells agree.

The forms are optional: showing one never calls the org and never waits for input. Under papermill
the cells below the form cell do the phase's work from the parameters, so a batch run is unchanged.
In the kernels `runbook run` starts (``BATCH_ENV`` set) a form cell leaves only a line naming the form,
and ipywidgets is never imported there; under another papermill or nbconvert run it leaves the widget
in the output.

No field holds a secret: an encrypted key's passphrase is named by ``passphrase_env`` (the variable,
never its value), and a password typed into ``ask_credentials`` (getpass) stays in the process's connector.

Modules: ``fields`` (one parameter's widget), ``form`` (the generic ``PhaseForm``), one module per
phase's form, ``credentials``, ``lab`` (``python -m runbook.ui.lab``, `make lab`).
"""

from runbook.phases.cards import RowsCard
from runbook.ui.access_form import access_form
from runbook.ui.certificate_form import CertificatePreview, certificate_form, preview_certificate
from runbook.ui.connected_app_form import connected_app_form
from runbook.ui.credentials import ask_credentials
from runbook.ui.fields import Field
from runbook.ui.form import FormPlaceholder, Outcome, PhaseForm
from runbook.ui.verify_form import VerifyPreview, preview_verify, verify_form

__all__ = ["CertificatePreview", "Field", "FormPlaceholder", "Outcome", "PhaseForm", "RowsCard", "VerifyPreview",
           "access_form", "ask_credentials", "certificate_form", "connected_app_form", "preview_certificate",
           "preview_verify", "verify_form"]
