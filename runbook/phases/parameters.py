"""The phases' parameters, as their notebooks declare them, and the check of a whole run's parameters.

Each parameter is defined once: in its notebook's ``parameters`` cell (name, default, and the comment as
its help), read with papermill's own reader. From that come the README tables, the sample runbook.yaml,
the forms' defaults, and here the check that ``runbook run`` makes before anything is written: unknown
names (with a did-you-mean), values of the wrong type (coerced where the meaning is plain: ``62`` or
``62.0`` for api_version, ``"true"`` for a flag), then each phase's own validation (the same functions
the notebooks call), every problem listed at once.
"""

from __future__ import annotations

import ast
import difflib
import functools
from dataclasses import dataclass
from typing import Any

from runbook.errors import InputError, ParameterProblems
from runbook.phases import PHASES, Phase

# the runner's own options that stand for parameters (`runbook run --org/--workdir`)
RUNNER_OPTIONS = ("org", "workdir")
# integers that also take a word
WORDS = {"callback_port": ("auto",)}
# what YAML 1.1 (PyYAML, so -p and --config) reads as a boolean, accepted in text for a boolean parameter too
YAML_BOOLEANS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


@dataclass(frozen=True)
class Parameter:
    """One parameter of one phase: its default (a Python value) and help, as its notebook declares them."""

    name: str
    default: Any
    help: str


def phase_parameters(phase: Phase) -> dict[str, Parameter]:
    """The parameters ``phase``'s notebook declares, by name, in its order."""
    stat = phase.path.stat()
    return dict(_read(str(phase.path), stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _read(path: str, _mtime_ns: int) -> tuple[tuple[str, Parameter], ...]:
    from runbook.run.kernel import import_papermill

    out = []
    for name, found in import_papermill().inspect_notebook(path).items():
        try:
            default = ast.literal_eval(found["default"])
        except (ValueError, SyntaxError):
            default = found["default"]
        out.append((name, Parameter(name, default, (found.get("help") or "").strip())))
    return tuple(out)


def all_names() -> set[str]:
    return {name for phase in PHASES for name in phase_parameters(phase)}


def coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``; raises InputError naming the parameter when it cannot be."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.strip().lower() in YAML_BOOLEANS:
            return YAML_BOOLEANS[value.strip().lower()]
        if not isinstance(value, bool):
            raise InputError(name, value, "use true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, str) and value.strip() in WORDS.get(name, ()):
            return value.strip()
        number = _number(value)
        if number is None or number != int(number) or number < 0:
            words = " or ".join(f'"{w}"' for w in WORDS.get(name, ()))
            raise InputError(name, value, f"use a whole number, 0 or more{' (or ' + words + ')' if words else ''}")
        return int(number)
    if isinstance(default, float):
        number = _number(value)
        if number is None or number < 0:
            raise InputError(name, value, "use a number, 0 or more")
        return number
    if isinstance(default, str):
        if name == "api_version" and _number(value) is not None:
            return f"{float(_number(value)):.1f}"
        if isinstance(value, bool):  # YAML read `-p web_flow=off` (or on, yes, no) as a boolean: the word was meant
            return "on" if value else "off"
        if not isinstance(value, str):
            raise InputError(name, value, f"use a text value, e.g. {default!r}")
        return value
    if isinstance(default, list) and not isinstance(value, list | str):
        raise InputError(name, value, f"use a list, e.g. {default!r}")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def unknown_names(params: dict[str, Any]) -> list[InputError]:
    """An InputError for each name no phase declares, with the closest names that exist."""
    known = sorted(all_names() | set(RUNNER_OPTIONS))
    problems = []
    for name in params:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
            fix = f"did you mean {' or '.join(near)}?" if near else f"the parameters are: {', '.join(known)}"
            problems.append(InputError(name, params[name], fix, problem="no phase has such a parameter"))
    return problems


def effective(phase: Phase, params: dict[str, Any]) -> dict[str, Any]:
    """What ``phase`` runs with: its defaults, with ``params`` (already coerced) where it declares them."""
    return {name: params.get(name, p.default) for name, p in phase_parameters(phase).items()}


def check_run(params: dict[str, Any], *, phases: list[str] | None = None) -> dict[str, Any]:
    """``params`` coerced to the notebooks' types, after checking the whole run; raises ParameterProblems.

    Unknown names and wrong types are found for every phase; then each selected phase's own validation
    runs on its effective parameters (nothing is written, nothing is sent to the org). A validation stops
    at its first problem, so it is run again with that parameter at its default until it passes: every
    problem is listed, not only the first.
    """
    problems = unknown_names(params)
    defaults: dict[str, Any] = {}
    for phase in PHASES:
        for name, p in phase_parameters(phase).items():
            defaults.setdefault(name, p.default)
    coerced, usable = {}, {}
    for name, value in params.items():
        try:
            coerced[name] = usable[name] = coerce(name, value, defaults[name]) if name in defaults else value
        except InputError as exc:
            problems.append(exc)
    from runbook.phases.checks import PHASE_CHECKS, check_common

    selected = [p for p in PHASES if not phases or p.name in phases]
    problems += _phase_problems(selected[0], {**effective(selected[0], usable), **usable},
                                [p.name for p in selected], check_common) if selected else []
    for phase in selected:
        problems += _phase_problems(phase, effective(phase, usable), [p.name for p in selected],
                                    PHASE_CHECKS[phase.name])
    if problems:
        raise ParameterProblems(_unique(problems))
    return coerced


def _phase_problems(phase: Phase, values: dict[str, Any], selected: list[str], check) -> list[InputError]:
    """Every problem ``check`` finds in ``values``: after each, that parameter goes back to its default."""
    found: list[InputError] = []
    declared = phase_parameters(phase)
    for _ in range(len(values) + 1):
        try:
            check(values, selected)
            return found
        except InputError as exc:
            found.append(exc)
            if exc.field not in declared or values.get(exc.field) == declared[exc.field].default:
                return found  # not one of this phase's own values (or its default is what fails): stop here
            values = {**values, exc.field: declared[exc.field].default}
    return found


def _unique(problems: list[InputError]) -> list[InputError]:
    """One entry per message (a parameter shared by several phases is reported once)."""
    seen: dict[str, InputError] = {}
    for problem in problems:
        seen.setdefault(str(problem), problem)
    return list(seen.values())
