"""A result shown as a card: label/value rows, as text in a terminal and as a table in a notebook."""

from __future__ import annotations

from html import escape


class RowsCard:
    """Mixed into a result dataclass whose ``rows()`` gives its (label, value) pairs."""

    def rows(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def __str__(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>"
                       for k, v in self.rows())
        return f"<table>{body}</table>"
