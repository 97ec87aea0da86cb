"""Results shown as cards: label/value rows as text in a terminal and as a table in a notebook, and the
bordered card a form puts its plan and result in."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any, ClassVar

# Plans and results are the phases' own HTML tables: left-aligned, columns apart, inside the form's cards.
CARD_STYLE = ("<style>.runbook-card table{border-collapse:collapse}.runbook-card th,.runbook-card td"
              "{text-align:left;padding:2px 12px 2px 0;vertical-align:top}</style>")


# The rows a user pastes elsewhere, by the labels the cards give them (runbook.phases.verify's HandOff): the consumer
# key into `sf org login jwt --client-id` or a CI variable, the commands into a terminal.
COPY_LABELS = frozenset({"Consumer key", "Log in with the CLI", "Decrypt the key first"})


class RowsCard:
    """Mixed into a result dataclass whose ``rows()`` gives its (label, value) pairs."""

    copy_labels: ClassVar[frozenset[str]] = COPY_LABELS

    def rows(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _copyable(self, label: str, value: str) -> bool:
        """A Copy button for the rows in ``copy_labels``, and for every `sf` command (one per verified user)."""
        return bool(value) and (label in self.copy_labels or value.startswith("sf "))

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td><code>{escape(v)}</code>"
                       f"{copy_button(v) if self._copyable(k, v) else ''}</td></tr>" for k, v in self.rows())
        return f"<table>{body}</table>"


def as_html(obj: Any) -> str:
    """``obj`` as a notebook would show it: its own HTML, else its text."""
    if hasattr(obj, "_repr_html_"):
        return obj._repr_html_()
    return f"<pre>{escape(str(obj))}</pre>"


def card(title: str, body: str) -> str:
    """``body`` in a bordered card under ``title`` (a form's plan and result)."""
    return (f"<div class='runbook-card' style='border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;"
            f"margin:6px 0'><div style='font-weight:600;margin-bottom:4px'>{escape(title)}</div>{body}</div>")


@dataclass
class Stacked:
    """Several results shown one under the other (phase 3's CI user above its plan or result); None is left out."""

    parts: list[Any]

    def _repr_html_(self) -> str:
        return "".join(as_html(part) for part in self.parts if part is not None)

    def __str__(self) -> str:
        return "\n\n".join(str(part) for part in self.parts if part is not None)


def copy_button(text: str) -> str:
    """A Copy button that puts exactly ``text`` on the clipboard (the browser decodes the attribute back)."""
    script = ("navigator.clipboard.writeText(this.dataset.copy).then(() => {this.textContent = 'Copied'}, "
              "() => {this.textContent = 'Select and copy it: the browser refused'})")
    return (f"<button type='button' class='runbook-copy' data-copy=\"{escape(text, quote=True)}\" "
            f"onclick=\"{script}\" title='Copy to the clipboard' style='margin-left:6px'>Copy</button>")


@dataclass
class Link:
    """A link under a result (phase 2's "View in Setup"), with a note on where it leads."""

    text: str
    url: str
    note: str = ""

    def _repr_html_(self) -> str:
        note = f" <span style='color:#57606a'>{escape(self.note)}</span>" if self.note else ""
        return (f"<p style='margin:4px 0'><a class='runbook-link' href=\"{escape(self.url, quote=True)}\" "
                f"target='_blank' rel='noopener noreferrer'>{escape(self.text)}</a>{note}</p>")
