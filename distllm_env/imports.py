"""The one place where distllm-env turns a ``module:Attr`` / ``module.Attr`` string into an object.

Importing a module runs its code, so this is only ever called for import paths the *user* gave
explicitly (CLI ``--placement/--routing/--policies/--policy``, Python API arguments) or allowed
explicitly (``--allow-import`` / ``allow_imports=True``).  Scenario files, ``--set`` values, trace files
and agent YAML are data and never reach this function on their own (README, "Trust boundary").
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import PolicyLoadError


def is_import_path(spec: Any) -> bool:
    """Whether ``spec`` looks like an import path (a string containing ``:`` or ``.``) rather than a
    registered name.  Registered policy names contain neither."""
    return isinstance(spec, str) and (":" in spec or "." in spec)


def split_import_path(path: str, *, field: str) -> tuple[str, str]:
    """``(module, attribute)`` of ``module:Attr`` (``Attr`` may be dotted) or ``module.Attr`` (the last
    dot separates the attribute).  Raises :class:`PolicyLoadError` (``"<field>: …"``) otherwise."""
    if not isinstance(path, str):
        raise PolicyLoadError(f"{field}: expected a 'module:Class' import path, got {type(path).__name__}")
    if ":" in path:
        module_name, _, attr = path.partition(":")
    elif "." in path:
        module_name, _, attr = path.rpartition(".")
    else:
        module_name, attr = "", ""
    if not module_name or not attr or ":" in attr:
        raise PolicyLoadError(f"{field}: {path!r} is not a known name or a 'module:Class' import path")
    return module_name, attr


def load_object(path: str, *, field: str = "import path") -> Any:
    """Import ``module:Attr`` (or ``module.Attr``) and return the attribute.

    ``field`` names where the path came from (``--placement``, ``policy_defaults.placement``,
    ``hyperparams.env_wrapper``…) and starts the message of the :class:`PolicyLoadError` raised
    (one line, exit code 2 in the CLI) when the module cannot be imported or lacks the attribute.
    Any exception raised while importing the module is reported that way, never propagated."""
    module_name, attr = split_import_path(path, field=field)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - report any import failure as one clean line
        detail = " ".join(str(exc).split())[:200]
        raise PolicyLoadError(f"{field}: cannot import module {module_name!r} for {path!r}: "
                              f"{type(exc).__name__}: {detail}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PolicyLoadError(f"{field}: module {module_name!r} has no attribute {attr!r} ({path!r})")
        obj = getattr(obj, part)
    return obj


__all__ = ["is_import_path", "load_object", "split_import_path"]
