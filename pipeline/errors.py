"""Error types shared across the pipeline's floors.

Apart so that every module may raise them: this one imports nothing of the pipeline,
so `paths`, `space` and `config` each take `TaskError` from here instead of from one
another (docs/architecture.md, floor 0).
"""

from __future__ import annotations


class TaskError(ValueError):
    """A bad task file, search space or override; each line names file and field.

    The command line prints it and exits with code 2 before anything starts."""
