"""`runbook init FOLDER`: the notebooks and the sample runbook.yaml, never over the user's edits."""

from __future__ import annotations

from click.testing import CliRunner

from runbook.cli import main
from runbook.phases import notebooks_dir

SHIPPED = ["00_start_here.ipynb", "01_certificate.ipynb", "02_connected_app.ipynb",
           "03_policies_and_access.ipynb", "04_verify.ipynb", "runbook.yaml"]


def _init(*args: str):
    return CliRunner().invoke(main, ["init", *args], catch_exceptions=False)


def test_init_copies_the_notebooks_and_the_sample_config(tmp_path):
    folder = tmp_path / "walkthrough" / "nested"
    result = _init(str(folder))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == SHIPPED
    assert (folder / "02_connected_app.ipynb").read_bytes() == (notebooks_dir() / "02_connected_app.ipynb").read_bytes()
    assert "contact_email" in (folder / "runbook.yaml").read_text()
    assert all(f"copied     {name}" in result.output for name in SHIPPED)
    assert "00_start_here.ipynb" in result.output.splitlines()[-1]


def test_init_keeps_an_edited_notebook_without_force(tmp_path):
    _init(str(tmp_path))
    edited = tmp_path / "02_connected_app.ipynb"
    edited.write_text('{"edited": true}')
    (tmp_path / "01_certificate.ipynb").unlink()

    result = _init(str(tmp_path))

    assert result.exit_code == 0, result.output
    assert edited.read_text() == '{"edited": true}'
    kept = "kept       02_connected_app.ipynb (yours differs from the shipped one; --force overwrites it)"
    assert kept in result.output
    assert "copied     01_certificate.ipynb" in result.output
    assert "unchanged  03_policies_and_access.ipynb" in result.output


def test_init_force_overwrites_an_edited_copy(tmp_path):
    _init(str(tmp_path))
    edited = tmp_path / "runbook.yaml"
    edited.write_text("contact_email: me@example.com\n")

    result = _init("--force", str(tmp_path))

    assert result.exit_code == 0, result.output
    assert edited.read_text().startswith("# runbook.yaml")
    assert "copied     runbook.yaml" in result.output


def test_run_refuses_a_secret_in_the_config_file(tmp_path):
    config = tmp_path / "runbook.yaml"
    config.write_text("contact_email: me@example.com\nsf_password: hunter2\n")
    try:
        result = CliRunner().invoke(main, ["run", "--config", str(config), "--workdir", str(tmp_path / "work"),
                                           "--runs-dir", str(tmp_path / "runs")])
    finally:
        config.unlink()  # the suite's secret scan would (rightly) flag the file
    assert result.exit_code != 0
    assert "never pass secrets" in result.output
    assert "hunter2" not in result.output


def test_run_refuses_a_config_that_is_not_a_mapping(tmp_path):
    config = tmp_path / "runbook.yaml"
    config.write_text("- contact_email\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "expected a mapping of parameter names to values" in result.output
