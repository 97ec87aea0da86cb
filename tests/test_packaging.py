"""The shipped package: build the wheel, install it into a fresh virtual environment, run it outside the checkout.

The wheel is built without isolation (no download) from a copy of the sources, so a stale build/ folder in the
checkout cannot leak into it. The new environment gets only the wheel installed; the dependencies (Jupyter,
papermill, ...) come from this test's environment through a .pth line, which keeps the test fast and offline.
It then asserts that `runbook` is imported from the new environment, never from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["00_start_here.ipynb", "01_certificate.ipynb", "02_connected_app.ipynb",
             "03_policies_and_access.ipynb", "04_verify.ipynb"]


def _sh(args: list, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "notebooks", src / "notebooks", ignore=ignore)
    shutil.copytree(ROOT / "runbook", src / "runbook", symlinks=True, ignore=ignore)  # notebooks -> ../notebooks
    dist = tmp_path_factory.mktemp("dist")
    _sh([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, src], src, dict(os.environ))
    (built,) = dist.glob("sf_connected_app_runbook-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A new virtual environment with the wheel installed, and a clean environment to run it in."""
    prefix = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(prefix)
    python = prefix / "bin" / "python"
    purelib = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                           text=True).strip())
    # the dependencies only: this environment's site-packages, after the new one on sys.path
    (purelib / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp_path_factory.mktemp("home"))
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _sh([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel],
        prefix, env)
    return prefix, env


def test_wheel_ships_the_package_the_local_org_and_the_notebooks(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"runbook/notebooks/{nb}" for nb in NOTEBOOKS} <= names
    assert {"runbook/cli.py", "runbook/run/batch.py", "runbook/init.py", "runbook/runbook.yaml"} <= names
    assert "runbook/localorg/__init__.py" in names
    assert any(n.startswith("runbook/localorg/") and n != "runbook/localorg/__init__.py" for n in names)
    assert not any(n.startswith(("tests/", "notebooks/", "tools/", "bench/")) for n in names)


def test_installed_runbook_comes_from_the_new_environment(fresh_env, tmp_path):
    prefix, env = fresh_env
    found = _sh([prefix / "bin" / "python", "-c", "import runbook, runbook.phases as b; "
                 "print(runbook.__file__); print(b.notebooks_dir())"], tmp_path, env).stdout.split()
    assert all(Path(p).resolve().is_relative_to(prefix.resolve()) for p in found), found
    assert not any(str(ROOT) in p for p in found)


def test_version_comes_from_the_package_metadata(fresh_env, tmp_path):
    prefix, env = fresh_env
    from importlib.metadata import version

    for cmd in ([prefix / "bin" / "runbook", "--version"], [prefix / "bin" / "python", "-m", "runbook", "--version"]):
        assert _sh(cmd, tmp_path, env).stdout.strip() == f"runbook, version {version('sf-connected-app-runbook')}"


def test_installed_runbook_runs_all_phases_from_an_empty_folder(fresh_env, tmp_path):
    prefix, env = fresh_env
    folder = tmp_path / "empty"
    folder.mkdir()

    # callback_port=auto: another test (or program) may hold the default 1717 right now
    proc = _sh([prefix / "bin" / "runbook", "run", "-p", "callback_port=auto"], folder, env)

    assert "JWT login as:   admin@local.devhub" in proc.stdout, proc.stdout + proc.stderr
    assert "CLI command:    sf org login jwt --client-id " in proc.stdout
    assert (folder / "work" / "keys" / "server.key").is_file()
    (run_dir,) = (folder / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == NOTEBOOKS[1:]


def test_init_then_run_with_the_sample_config(fresh_env, tmp_path):
    prefix, env = fresh_env
    runbook = prefix / "bin" / "runbook"
    _sh([runbook, "init", "walkthrough"], tmp_path, env)
    assert sorted(p.name for p in (tmp_path / "walkthrough").iterdir()) == [*NOTEBOOKS, "runbook.yaml"]
    config = tmp_path / "walkthrough" / "runbook.yaml"
    text = config.read_text()
    config.write_text(text.replace("# workdir: work ", "workdir: state ", 1)
                      .replace("# contact_email: admin@example.com", "contact_email: ci@example.com", 1)
                      .replace("# callback_port: 1717 ", "callback_port: auto ", 1))

    proc = _sh([runbook, "run", "--config", config, "-p", "label=Packaged CI"], tmp_path, env)

    assert "App:            Packaged CI (Runbook_CI" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "state" / "phases" / "verify.json").is_file()
    (run_dir,) = (tmp_path / "runs").iterdir()
    injected = next(c for c in json.loads((run_dir / "02_connected_app.ipynb").read_text())["cells"]
                    if "injected-parameters" in c["metadata"].get("tags", []))
    assert 'contact_email = "ci@example.com"' in "".join(injected["source"])
    assert not (tmp_path / "work").exists()
