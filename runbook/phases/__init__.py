"""The phases: the registry (the one list of them, in order) and each phase's work, one module per job.

Importing this package loads the registry only; a phase's module is imported when it is used.
"""

from runbook.phases.registry import PHASE_NAMES, PHASES, Phase, after, notebooks_dir, phase_named

__all__ = ["PHASES", "PHASE_NAMES", "Phase", "after", "notebooks_dir", "phase_named"]
