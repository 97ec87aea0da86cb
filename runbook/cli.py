"""The `runbook` command: run the phases as a batch, serve the local org."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml

from runbook.errors import RunbookError


def _parse_params(pairs: tuple[str, ...]) -> dict:
    """``-p name=value`` pairs; values are YAML, so lists and numbers work (-p profiles='[A, B]')."""
    params = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"{pair!r}: use name=value", param_hint="-p")
        params[name] = yaml.safe_load(raw) if raw else ""
    return params


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sf-connected-app-runbook", prog_name="runbook")
def main() -> None:
    """Set up a Salesforce Connected App for a Dev Hub org, end to end, with Jupyter notebooks."""


@main.command()
@click.option("--org", default="local", show_default=True,
              help='"local" (the emulated Dev Hub), a Salesforce CLI alias or username, "env" or "password".')
@click.option("--workdir", default="work", show_default=True, type=click.Path(file_okay=False),
              help="Folder for keys and phase records (kept between runs: reruns reuse the key).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Executed notebooks go to RUNS_DIR/<timestamp>/.")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A notebook parameter (YAML value); repeatable. Never a secret.")
@click.option("--fresh-org", is_flag=True, help="Start the local org from an empty state.")
def run(org: str, workdir: str, runs_dir: str, params: tuple[str, ...], fresh_org: bool) -> None:
    """Run the four phase notebooks in order with papermill; stop at the first failure."""
    from runbook.batch import run_runbook
    from runbook.org import stop_local_orgs

    try:
        summary = run_runbook(org=org, workdir=workdir, params=_parse_params(params), runs_dir=runs_dir,
                              fresh_org=fresh_org, progress=lambda m: click.echo(m, err=True))
    except RunbookError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stop_local_orgs()
    click.echo("\n".join(summary.lines()))
    if not summary.ok:
        sys.exit(1)


@main.group()
def org() -> None:
    """The local (emulated) Dev Hub org."""


@org.command()
@click.option("--state", "state_dir", default=".runbook/localorg", show_default=True,
              type=click.Path(file_okay=False), help="Folder with the org's SQLite state and CA.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0 = any free port).")
@click.option("--no-connected-apps", is_flag=True,
              help="Refuse new connected apps, like a new org since Spring '26.")
def serve(state_dir: str, port: int, no_connected_apps: bool) -> None:
    """Serve the local org in the foreground (Ctrl-C stops it)."""
    from runbook.localorg import serve_forever

    serve_forever(Path(state_dir), port, allow_connected_apps=not no_connected_apps)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--secrets-from", "secret_files", multiple=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), metavar="FILE",
              help="Also look for the secrets in FILE: a JSON file (values of its secret-named keys, e.g. "
                   "admin-credentials.json) or a PEM private key (its body lines). Repeatable.")
def scan(paths: tuple[Path, ...], secret_files: tuple[Path, ...]) -> None:
    """Fail if executed notebooks, logs or reports under PATH... hold a private key, password or token.

    Prints one line per finding (file, place, kind, a redacted excerpt: never the secret) and exits 1,
    or prints "no secrets found in N files" and exits 0.
    """
    from runbook.scan import iter_files, known_secrets_from_file, scan_paths

    known: list[str] = []
    for secret_file in secret_files:
        try:
            known += known_secrets_from_file(secret_file)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--secrets-from") from None
    files = list(iter_files(paths))
    findings = scan_paths(files, known)
    for finding in findings:
        click.echo(str(finding))
    if findings:
        click.echo(f"{len(findings)} secret(s) found in {len({f.path for f in findings})} of {len(files)} files",
                   err=True)
        sys.exit(1)
    click.echo(f"no secrets found in {len(files)} files")


if __name__ == "__main__":
    main()
