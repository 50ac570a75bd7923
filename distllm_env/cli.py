"""The ``distllm-env`` command line.

Each sub-command lives in its own module under :mod:`distllm_env.commands` and exposes
``register(subparsers)``; this module only assembles them and maps errors to exit codes
(docs/contracts.md §5): 0 ok, 2 bad input (scenario, override, policy path, argument, or a placement
that cannot host the model on the scenario's servers: ``PlacementError``) with one clean line and no
traceback, 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._version import __version__
from .errors import DistLLMError, PlacementError, PolicyLoadError, ScenarioError

#: sub-command modules, in help order
COMMAND_MODULES = [
    "distllm_env.commands.scenarios",
    "distllm_env.commands.simulate",
    "distllm_env.commands.compare",
    "distllm_env.commands.reproduce",
    "distllm_env.commands.split",
    "distllm_env.commands.train",
    "distllm_env.commands.evaluate",
    "distllm_env.commands.zoo",
]


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose usage errors are ONE line on stderr
    (``distllm-env: error: --seed: invalid int value: '1.5'``) and exit code 2, like every other bad
    input (docs/contracts.md §5); ``--help`` still prints the full usage.  Sub-command parsers inherit
    the class (``add_subparsers`` uses the parent's class)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        message = " ".join(str(message).split())
        if message.startswith("argument "):        # "argument --seed: invalid int value" -> "--seed: …"
            message = message[len("argument "):]
        self.exit(2, f"distllm-env: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="distllm-env",
        description="Simulate, compare and learn block placement, request routing and client/server "
                    "splitting for geo-distributed LLM inference.")
    parser.add_argument("--version", action="version", version=f"distllm-env {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:   # a command not built yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # argparse already printed its message
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        from .commands.common import cwd_on_import_path

        with cwd_on_import_path():      # --policy my_pkg:Class finds ./my_pkg without PYTHONPATH=.
            return int(args.func(args) or 0)
    except (ScenarioError, PolicyLoadError) as exc:
        print(f"distllm-env: error: {exc}", file=sys.stderr)
        return 2
    except PlacementError as exc:   # the scenario's servers cannot host the model under this placement: input
        print(f"distllm-env: error: PlacementError: {exc}", file=sys.stderr)
        return 2
    except DistLLMError as exc:
        print(f"distllm-env: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # pragma: no cover - e.g. piping into head
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
