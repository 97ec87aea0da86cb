"""The README and the sample runbook.yaml agree with the notebooks and the `runbook` command."""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import click
import yaml

from runbook.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FIX = "run python tools/readme_params.py and commit README.md and runbook/runbook.yaml"


def _tool():
    spec = importlib.util.spec_from_file_location("readme_params", ROOT / "tools" / "readme_params.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("readme_params", module)  # its dataclasses look their module up there
    spec.loader.exec_module(sys.modules["readme_params"])
    module = sys.modules["readme_params"]
    return module


def test_parameter_tables_match_the_notebooks():
    tool = _tool()
    wanted = tool.updated_readme(README, tool.render_tables(tool.read_phases()))
    assert wanted == README, f"README.md's parameter tables differ from the notebooks' parameters cells: {FIX}"


def test_sample_config_matches_the_notebooks():
    tool = _tool()
    shipped = (ROOT / "runbook" / "runbook.yaml").read_text()
    assert shipped == tool.render_sample(tool.read_phases()), f"runbook/runbook.yaml is out of date: {FIX}"


def test_sample_config_uncommented_gives_every_parameter_its_default():
    tool = _tool()
    text = (ROOT / "runbook" / "runbook.yaml").read_text()
    assert yaml.safe_load(text) is None  # all commented out: running with it as shipped changes nothing
    uncommented = "\n".join(line[2:] for line in text.splitlines() if re.match(r"# \w+: ", line))
    values = yaml.safe_load(uncommented)
    defaults = {p.name: ast.literal_eval(p.default) for phase in tool.read_phases() for p in phase.params}
    assert values == defaults


def _runbook_commands() -> list[list[str]]:
    """The `runbook ...` command lines in the README's sh blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        text = re.sub(r"\\\n\s*", " ", block)
        text = re.sub(r"\n\s+(?=\[)", " ", text)  # a usage line wrapped before an [--option]
        for line in text.splitlines():
            line = line.split("#")[0].strip()
            words = shlex.split(line.replace("[", " ").replace("]", " ").replace("|", " "))
            if words and Path(words[0]).name == "runbook":
                commands.append(words[1:])
    return commands


def _command(words: list[str]) -> tuple[click.Command, list[str]]:
    command, path = main, []
    while isinstance(command, click.Group) and words and words[0] in command.commands:
        command = command.commands[words[0]]
        path.append(words.pop(0))
    return command, path


def test_every_command_and_option_in_the_readme_exists():
    commands = _runbook_commands()
    assert any(c[:1] == ["run"] for c in commands) and any(c[:1] == ["init"] for c in commands)
    for words in commands:
        command, path = _command(list(words))
        options = {opt for param in command.params for opt in getattr(param, "opts", [])} | {"--help", "-h"}
        if command is main:
            options |= {"--version"}
        unknown = [w for w in words if w.startswith("-") and w.split("=")[0] not in options]
        assert not unknown, f"README: `runbook {' '.join(words)}`: {unknown} not options of runbook {' '.join(path)}"


def test_every_subcommand_is_in_the_readme():
    missing = [name for name in main.commands if f"runbook {name}" not in README]
    assert not missing, f"runbook {missing} not described in README.md"
    assert "runbook org serve" in README
