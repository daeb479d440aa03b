"""Preloaded by the copy workers' forkserver, first: stands in for the caller's main module.

multiprocessing re-runs the parent's main module (as `__mp_main__`) in every new worker. In a
Prefect flow run that module is Prefect's engine, and its imports cost each worker seconds
the mover never uses. The forkserver's own `__main__` is given the caller's main module name
(or path), which multiprocessing takes as "already there" and skips; nothing the workers run
is defined in that module.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ModuleSpec

MAIN_ENV = "SHAREMIG_MOVER_PARENT_MAIN"
"""`name:<module>` or `path:<file>` of the caller's main module, set before the forkserver
starts (the server inherits the environment)."""


def _adopt(main: str) -> None:
    kind, _, value = main.partition(":")
    module = sys.modules["__main__"]
    if kind == "name" and value:
        module.__spec__ = ModuleSpec(value, None)
    elif kind == "path" and value:
        module.__file__ = value


_adopt(os.environ.get(MAIN_ENV, ""))
