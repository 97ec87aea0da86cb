"""The fleet report: one row per org (phase statuses, consumer key, duration, error), as Markdown and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

from runbook.run.fleet import FleetResult, OrgResult, phase_names, phase_status
from runbook.work.files import PUBLIC, write_atomic
from runbook.work.workdir import open_workdir

_ICON = {"done": "✓ done", "skipped": "↷ skipped", "failed": "✗ failed", "interrupted": "⏸ interrupted",
         "not run": "· not run"}
_ERROR_CHARS = 300


@dataclass
class ReportRow:
    name: str
    org: str
    statuses: dict[str, str]
    consumer_key: str
    seconds: float
    error: str
    ok: bool


def report_rows(result: FleetResult) -> list[ReportRow]:
    """One row per org, in the fleet file's order."""
    return [_row(r) for r in result.results]


def _row(result: OrgResult) -> ReportRow:
    statuses = {phase: phase_status(result, phase) for phase in phase_names()}
    failed = [p for p in (result.summary.phases if result.summary else []) if p.status == "failed"]
    error = result.error or (f"{failed[0].phase}: {failed[0].error}" if failed else "")
    return ReportRow(result.org.name, result.org.org, statuses, _consumer_key(result.org.workdir),
                     result.seconds, _one_line(error), result.ok)


def _consumer_key(workdir: Path) -> str:
    """The consumer key phase 2 recorded (a public identifier, not a secret), or ""."""
    try:
        return (open_workdir(workdir).load("connected_app") or {}).get("consumer_key", "")
    except Exception:  # a missing or unreadable work folder: the report still gets written
        return ""


def _one_line(error: str) -> str:
    text = " ".join(error.split())
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS - 1] + "…"


def write_report(result: FleetResult, folder: str | Path | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html to ``folder`` (default: the fleet's run folder); returns both paths."""
    folder = Path(folder or result.run_dir)
    rows = report_rows(result)
    md, html = folder / "report.md", folder / "report.html"
    write_atomic(md, markdown(result, rows), PUBLIC)
    write_atomic(html, to_html(result, rows), PUBLIC)
    return md, html


def _headline(result: FleetResult, rows: list[ReportRow]) -> str:
    failed = sum(not r.ok for r in rows)
    stopped = " (interrupted by Ctrl-C)" if result.interrupted else ""
    return (f"{len(rows)} orgs, {len(rows) - failed} ok, {failed} failed, in {result.seconds:.1f} s{stopped} "
            f"(executed notebooks under {result.run_dir})")


def markdown(result: FleetResult, rows: list[ReportRow]) -> str:
    phases = phase_names()
    lines = ["# Runbook fleet report", "", _headline(result, rows), "",
             "| org | target | " + " | ".join(phases) + " | consumer key | seconds | error |",
             "|---|---|" + "---|" * len(phases) + "---|---:|---|"]
    for r in rows:
        cells = [r.name, f"`{r.org}`", *(_ICON[r.statuses[p]] for p in phases),
                 f"`{r.consumer_key}`" if r.consumer_key else "", f"{r.seconds:.1f}", r.error.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_html(result: FleetResult, rows: list[ReportRow]) -> str:
    phases = phase_names()
    color = {"done": "#1a7f37", "skipped": "#57606a", "failed": "#cf222e", "interrupted": "#9a6700",
             "not run": "#8c959f"}
    head = "".join(f"<th>{escape(h)}</th>" for h in ["org", "target", *phases, "consumer key", "seconds", "error"])
    body = []
    for r in rows:
        cells = [f"<td>{escape(r.name)}</td>", f"<td><code>{escape(r.org)}</code></td>"]
        cells += [f"<td data-phase='{p}' style='color:{color[r.statuses[p]]}'>{escape(_ICON[r.statuses[p]])}</td>"
                  for p in phases]
        cells += [f"<td><code>{escape(r.consumer_key)}</code></td>",
                  f"<td style='text-align:right'>{r.seconds:.1f}</td>", f"<td>{escape(r.error)}</td>"]
        body.append(f"<tr data-org='{escape(r.name)}' data-ok='{str(r.ok).lower()}'>{''.join(cells)}</tr>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Runbook fleet report</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #d0d7de;"
            "padding:4px 8px;vertical-align:top}</style></head><body><h1>Runbook fleet report</h1>"
            f"<p>{escape(_headline(result, rows))}</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></body></html>\n")
