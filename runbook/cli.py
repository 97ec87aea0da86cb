"""The `runbook` command: run the phases as a batch, copy the notebooks for the walkthrough, serve the local org,
scan outputs for secrets."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

import click
import yaml

from runbook.errors import RunbookError
from runbook.work.workdir import DEFAULT_WORKDIR, resolve_workdir


def _read_config(path: Path) -> dict:
    """The parameters in a runbook.yaml: a mapping of name to value (an all-comments file is empty)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path}: not valid YAML: {exc}", param_hint="--config") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and k.isidentifier() for k in data):
        raise click.BadParameter(f"{path}: expected a mapping of parameter names to values, e.g. "
                                 "'contact_email: you@example.com'", param_hint="--config")
    return data


def _parse_params(pairs: tuple[str, ...]) -> dict:
    """``-p name=value`` pairs; values are YAML, so lists and numbers work (-p profiles='[A, B]')."""
    params = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"{pair!r}: use name=value", param_hint="-p")
        params[name] = yaml.safe_load(raw) if raw else ""
    return params


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="sf-connected-app-runbook", prog_name="runbook")
def main() -> None:
    """Set up a Salesforce Connected App for a Dev Hub org, end to end, with Jupyter notebooks.

    \b
    The four phases (one notebook each, run in order by papermill):
      1. certificate  key pair and self-signed certificate
      2. app          the connected app (OAuth, digital signatures, scopes)
      3. access       OAuth policies, pre-authorized profiles and permission sets
      4. verify       a real JWT bearer login and the `sf org login jwt` command

    \b
    Examples:
      runbook run                           all four phases against the emulated local org
      runbook run --org my-devhub -p contact_email=you@example.com
      runbook run --config runbook.yaml     parameters from a file (see `runbook init`)
      runbook run --config orgs.yaml --jobs 4   a fleet: every org listed under orgs:, report.md/.html
      runbook init walkthrough              the notebooks and a sample runbook.yaml, to open in Jupyter
      runbook org serve                     the emulated Dev Hub in the foreground
      runbook scan runs/                    check executed notebooks for leaked secrets
    """


@main.command(short_help="Run the four phases in order against an org; stop at the first failure.")
@click.option("--org", default="local", show_default=True,
              help='"local" (the emulated Dev Hub), a Salesforce CLI alias or username, "env" or "password".')
@click.option("--workdir", default=DEFAULT_WORKDIR, show_default=True, type=click.Path(file_okay=False),
              help="Folder for keys and phase records (kept between runs: reruns reuse the key).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Executed notebooks go to RUNS_DIR/<timestamp>/.")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A notebook parameter (YAML value); repeatable. Never a secret.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE", help="Parameters from a YAML mapping (the sample: `runbook init`); -p, --org and "
                                   "--workdir on the command line win.")
@click.option("--fresh-org", is_flag=True, help="Start the local org from an empty state (local org only).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="For a fleet file (--config with orgs:): how many orgs run at once (default: 2 per core + 1, "
                   "max 8).")
@click.option("--resume", is_flag=True, help="Skip the phases already done, as the work folder and the org say.")
@click.option("--check", "check_only", is_flag=True,
              help="Only check every phase's parameters (names, types, values) and exit 0 or 1; nothing is written.")
@click.pass_context
def run(ctx: click.Context, org: str, workdir: str, runs_dir: str, params: tuple[str, ...],
        config_file: Path | None, fresh_org: bool, jobs: int | None, resume: bool, check_only: bool) -> None:
    """Run the four phase notebooks in order with papermill; stop at the first failure.

    Prints one line per phase, then the app, its consumer key and the `sf org login jwt` command; exits 1 if a
    phase failed (its name and error are printed). Reruns change nothing and reuse the key in WORKDIR.
    """
    from runbook.run.batch import run_runbook
    from runbook.salesforce import stop_local_orgs

    if config_file and _is_fleet_file(config_file):
        _run_fleet(config_file, runs_dir, jobs, resume, _parse_params(params))
        return
    merged = _read_config(config_file) if config_file else {}
    for name, value in (("org", org), ("workdir", workdir)):
        if name not in merged or ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            merged[name] = value
    org, workdir = str(merged.pop("org")), str(merged.pop("workdir"))
    merged.update(_parse_params(params))
    if check_only:
        _check_only(org, workdir, merged)
        return
    try:
        summary = run_runbook(org=org, workdir=workdir, params=merged, runs_dir=runs_dir,
                              fresh_org=fresh_org, resume=resume, progress=lambda m: click.echo(m, err=True))
    except RunbookError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stop_local_orgs()
    click.echo("\n".join(summary.lines()))
    if not summary.ok:
        sys.exit(130 if summary.interrupted else 1)


def _check_only(org: str, workdir: str, params: dict) -> None:
    """`runbook run --check`: every problem of every phase's parameters at once, then the names only the org can
    check (profiles, permission sets, users, the login URL's org); exit 1 if there is one. Nothing is written."""
    from runbook.phases.org_checks import ORG_CHECKED, check_org, org_checked_values
    from runbook.phases.parameters import check_run
    from runbook.run.batch import check_no_secret_params
    from runbook.salesforce import DEFAULT_API_VERSION, connect, connect_local, local_state_dir, stop_local_orgs

    folder = str(resolve_workdir(workdir))
    try:
        check_no_secret_params(params)
        checked = check_run({**params, "org": org, "workdir": folder})
        api_version = str(checked.get("api_version", DEFAULT_API_VERSION))
        with contextlib.ExitStack() as stack:
            if org == "local" and not local_state_dir(folder).exists():  # a fresh org, as a first run starts it
                state = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "localorg"
                stack.callback(stop_local_orgs)
                session = connect_local(state, api_version=api_version)
            else:
                session = connect(org, workdir=folder, api_version=api_version)
            check_org(session, org_checked_values(checked), list(ORG_CHECKED))
    except RunbookError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    finally:
        stop_local_orgs()
    click.echo(f"The parameters of all four phases are valid, and the org ({session.instance_url}) has the "
               "profiles, permission sets and users they name (nothing was written).")


def _is_fleet_file(path: Path) -> bool:
    """A fleet file lists ``orgs:``; any other --config file is one org's parameters."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "orgs" in data


def _run_fleet(config: Path, runs_dir: str, jobs: int | None, resume: bool, overrides: dict) -> None:
    """Every org of the fleet file, ``jobs`` at a time; report.md/.html; exit 1 if any org failed."""
    from runbook.run.fleet import load_fleet, run_fleet
    from runbook.run.report import write_report
    from runbook.salesforce import stop_local_orgs

    try:
        orgs = load_fleet(config)
        for fleet_org in orgs:  # -p values override every org's parameters
            fleet_org.params.update(overrides)
        result = run_fleet(orgs, runs_dir=runs_dir, jobs=jobs, resume=resume,
                           progress=lambda m: click.echo(m, err=True))
    except RunbookError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stop_local_orgs()
    md, html = write_report(result)
    click.echo(md.read_text())
    click.echo(f"Report: {md} and {html}")
    if not result.ok:
        click.echo(f"{len(result.failed)} of {len(result.results)} orgs failed: "
                   f"{', '.join(r.org.name for r in result.failed)}", err=True)
        sys.exit(130 if result.interrupted else 1)


@main.group(short_help="The emulated Dev Hub org (HTTPS on 127.0.0.1).")
def org() -> None:
    """The local (emulated) Dev Hub org: HTTPS on 127.0.0.1, its own CA, SQLite state."""


@org.command(short_help="Serve the local org in the foreground (Ctrl-C stops it).")
@click.option("--state", "state_dir", default=f"{DEFAULT_WORKDIR}/localorg", show_default=True,
              type=click.Path(file_okay=False), help="Folder with the org's SQLite state and CA.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (0 = any free port).")
@click.option("--no-connected-apps", is_flag=True,
              help="Refuse new connected apps, like a new org since Spring '26.")
@click.option("--no-external-client-apps", is_flag=True,
              help="Refuse External Client App deploys and creates, like an org without the 'Opt in to External "
                   "Client Apps'.")
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Wait this long before serving each call (a slow network or org).")
@click.option("--fault", "faults", multiple=True, metavar="KIND[:TIMES[:MATCH]]",
              help="Inject a fault: server_error, rate_limit, expired_session or timeout, for the next TIMES "
                   "calls (default 1, 0 = all) whose 'METHOD /path body' matches the regex MATCH. Repeatable.")
@click.option("--propagation-s", default=0.0, show_default=True, type=click.FloatRange(0),
              help="A new or changed app answers invalid_client_id for this many seconds, as a real org does "
                   "for 2-10 minutes (0 = usable at once).")
def serve(state_dir: str, port: int, no_connected_apps: bool, no_external_client_apps: bool, latency_ms: float,
          faults: tuple[str, ...], propagation_s: float) -> None:
    """Serve the local org in the foreground (Ctrl-C stops it).

    Prints its URL, CA bundle and admin username; the admin password is in STATE/admin-credentials.json
    (mode 0600).
    """
    import re

    from runbook.localorg import Fault, serve_forever

    try:
        plan = [Fault.parse(text) for text in faults]
    except (ValueError, re.error) as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    serve_forever(Path(state_dir), port, allow_connected_apps=not no_connected_apps, latency_ms=latency_ms,
                  faults=plan, propagation_s=propagation_s, external_client_apps=not no_external_client_apps)


@main.command(short_help="Fail if outputs under PATH... hold a private key, password or token.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--secrets-from", "secret_files", multiple=True, type=click.Path(exists=True, dir_okay=False,
              path_type=Path), metavar="FILE",
              help="Also look for the secrets in FILE: a JSON file (values of its secret-named keys, e.g. "
                   "admin-credentials.json) or a PEM private key (its body lines). Repeatable.")
def scan(paths: tuple[Path, ...], secret_files: tuple[Path, ...]) -> None:
    """Fail if executed notebooks, logs or reports under PATH... hold a private key, password or token.

    \b
    Found: PEM private keys, their base64 body or the whole key file in base64 (SF_JWT_KEY_BASE64), Salesforce
    tokens, JWTs, Authorization headers, secret-named fields and NAME=value lines (SF_PASSWORD=…), and URLs with
    credentials (https://user:password@host). Consumer keys, certificates, paths and placeholders are not.

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


@main.command(short_help="Copy the notebooks and a sample runbook.yaml into FOLDER.")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files you have edited with the shipped ones.")
def init(folder: Path, force: bool) -> None:
    """Copy the notebooks and a sample runbook.yaml into FOLDER, for the guided walkthrough.

    FOLDER is created if needed. A file already there that you have edited is kept (and listed) unless
    --force; then open FOLDER/00_start_here.ipynb in Jupyter, or run `runbook run --config FOLDER/runbook.yaml`.
    """
    from runbook.init import init_folder

    result = init_folder(folder, force=force)
    for line in result.lines():
        click.echo(line)
    click.echo(f"Next: jupyter lab {folder}  (open 00_start_here.ipynb), or: "
               f"runbook run --config {folder / 'runbook.yaml'}")


@main.command()
@click.option("--app", "app_name", required=True, help="The app's API name (fullName), e.g. Runbook_CI.")
@click.option("--org", default="local", show_default=True,
              help='"local" (the emulated Dev Hub), a Salesforce CLI alias or username, "env" or "password".')
@click.option("--workdir", default=DEFAULT_WORKDIR, show_default=True, type=click.Path(file_okay=False),
              help="Work folder: the app's phase records and consumer secret file there go too.")
@click.option("--yes", is_flag=True, help="Delete without asking (after printing the plan).")
def teardown(app_name: str, org: str, workdir: str, yes: bool) -> None:
    """Delete an app (connected or external client app) and its pre-authorizations; shows the plan first."""
    from runbook.phases.teardown import apply_teardown, plan_teardown
    from runbook.salesforce import connect, stop_local_orgs

    try:
        session = connect(org, workdir=workdir)
        plan = plan_teardown(session, app_name, workdir=workdir)
        click.echo(str(plan))
        if plan.is_empty:
            return
        if not yes and not click.confirm(f"Delete {app_name} from {session.instance_url}?", default=False):
            click.echo("Nothing deleted.")
            return
        apply_teardown(session, plan)
        click.echo(f"Deleted {app_name}.")
    except RunbookError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stop_local_orgs()


@main.command("export-ci")
@click.option("--workdir", default=DEFAULT_WORKDIR, show_default=True, type=click.Path(file_okay=False),
              help="The work folder phase 4 verified.")
@click.option("--push", type=click.Choice(["github", "gitlab"]), default=None,
              help="Set the variables in CI instead of writing a file: `gh secret set` / `glab variable set`, "
                   "each value on stdin (the tool must be logged in).")
@click.option("--repo", default="", metavar="OWNER/NAME",
              help="With --push: the repository (GitLab: GROUP/NAMESPACE/NAME too); default: the current folder's, "
                   "as gh/glab pick it.")
@click.option("--env", "environment", default="", metavar="ENV",
              help="With --push: a GitHub deployment environment (--env) or GitLab environment scope (--scope).")
@click.option("--format", "fmt", type=click.Choice(["github", "gitlab", "env", "sfdx-url"]), default="env",
              show_default=True,
              help="github: dotenv for `gh secret set --env-file`; gitlab: JSON CI/CD variables; env: shell; "
                   "sfdx-url: log in by the web server flow and write the auth URL its refresh token makes, for "
                   "`sf org login sfdx-url` (the app needs phase 2's web flow).")
@click.option("--output", "-o", default="", type=click.Path(dir_okay=False),
              help="File to write (mode 0600); default WORKDIR/ci/sf-jwt.<format> "
                   "(sfdx-url: WORKDIR/ci/sf-auth-url.txt).")
@click.option("--username", default="", help="One of the users phase 4 verified (default: the first).")
@click.option("--instance-url", default="", help="Default: the login URL phase 4 verified against.")
@click.option("--passphrase-env", default="", metavar="NAME",
              help="For a key encrypted in phase 1: the NAME of the environment variable holding its passphrase "
                   "(never the passphrase); the key is exported decrypted, as `sf org login jwt` needs it.")
@click.pass_context
def export_ci_command(ctx: click.Context, workdir: str, push: str | None, repo: str, environment: str, fmt: str,
                      output: str, username: str, instance_url: str, passphrase_env: str) -> None:
    """Hand CI the variables for `sf org login jwt`: set them with gh/glab (--push) or write a mode-0600 file.

    \b
    SF_CONSUMER_KEY, SF_USERNAME, SF_INSTANCE_URL and SF_JWT_KEY_BASE64 (the private key, base64); only their
    names are printed. Examples:
      runbook export-ci --push github --repo me/app --env ci
      runbook export-ci --push gitlab --repo group/app      (protected; the key masked)
      runbook export-ci --format env -o ci.env              (a file: import it, then delete it)
      runbook export-ci --format sfdx-url                   (force://… for sf org login sfdx-url --sfdx-url-file)
    """
    from runbook.export_ci import SFDX_URL, export_ci, export_sfdx_auth_url, push_ci

    _check_export_options(ctx, push=push, repo=repo, environment=environment, output=output)
    try:
        if push:
            done = push_ci(workdir, target=push, repo=repo, env=environment, username=username,
                           instance_url=instance_url, passphrase_env=passphrase_env)
        elif fmt == SFDX_URL:
            done = export_sfdx_auth_url(workdir, output=output, username=username, instance_url=instance_url)
        else:
            done = export_ci(workdir, fmt=fmt, output=output, username=username, instance_url=instance_url,
                             passphrase_env=passphrase_env)
    except RunbookError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(done))


def _check_export_options(ctx: click.Context, *, push: str | None, repo: str, environment: str, output: str) -> None:
    """--repo/--env only mean something to a push, and a push writes no file (that is its point)."""
    if not push and (repo or environment):
        raise click.UsageError("--repo and --env say where --push sets the variables: add --push github|gitlab")
    format_given = ctx.get_parameter_source("fmt") is not click.core.ParameterSource.DEFAULT
    if push and (output or format_given):
        raise click.UsageError("--push sets the variables in CI and writes no file: leave out --output/--format, "
                               "or leave out --push to write one")


if __name__ == "__main__":
    main()
