"""Seeds in parallel: ``--workers N`` (standard-library process pool) and ``--backend ray`` (docs/agents.md,
"Scale-out").

:func:`map_seeds` applies a module-level function to a list of items, in parallel, and returns the
results **in the items' order**, so a parallel run gives exactly the rows of the serial one: every task
is a pure function of its item (scenario object, policies, seed), and all randomness flows from the
seed (docs/architecture.md, determinism).  Workers receive the resolved :class:`~distllm_env.scenario.Scenario`
object and plain data, never a path to re-resolve, so a relative ``--scenario my.yaml`` works on any
node.

* ``backend="process"`` (default): ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` start
  method (the same on Linux, macOS and Windows; no forked torch/BLAS threads).  ``workers=1`` runs in
  the calling process, exactly today's serial path.
* ``backend="ray"``: one ``ray.remote`` task per item (1 CPU each) on an existing cluster
  (``ray_address``, e.g. ``auto`` or ``ray://head:10001``, else the ``RAY_ADDRESS`` environment
  variable), or on a truly local Ray (``ray.init(address="local")``, ``workers`` CPUs) when no address
  is given, so a ``ray start`` cluster on the same machine does not capture the run.  Ray is imported
  only here, lazily (the ``rllib`` extra).

A policy object that cannot be sent to a worker process (a class defined in ``__main__``, an object
that does not pickle, e.g. one holding a lambda or a lock) makes the process backend fall back to the serial path with a
:class:`ParallelFallbackWarning` saying why; the results are the same, only slower.  Policies given as
``module:Class`` import paths are re-imported in each worker.  Policy objects must not carry state from
one seed to the next (each task gets its own copy), or a parallel run could differ from a serial one.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import pickle
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

from .errors import ScenarioError

#: values of ``--backend`` for evaluation commands
BACKENDS = ("process", "ray")


class ParallelFallbackWarning(UserWarning):
    """Parallel evaluation fell back to the serial path (the items could not be sent to workers)."""


def check_parallel(workers: int, backend: str = "process") -> None:
    """Validate ``workers`` / ``backend``.

    Raises:
        ScenarioError: ``workers`` < 1 (path ``--workers``) or an unknown backend (path ``--backend``)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ScenarioError("--workers", f"expected an integer ≥ 1, got {workers!r}")
    if backend not in BACKENDS:
        raise ScenarioError("--backend", f"expected one of {list(BACKENDS)}, got {backend!r}")


def _unpicklable_reason(items: Sequence[Any]) -> str | None:
    """Why ``items`` cannot go to a spawned worker process (None: they can)."""
    for item in items:
        for obj in (item if isinstance(item, tuple) else (item,)):
            mod = getattr(type(obj), "__module__", None)
            if mod == "__main__" or getattr(obj, "__module__", None) == "__main__":
                name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
                return (f"{name} is defined in __main__, which worker processes cannot import; define it in a "
                        "module and pass it as module:Class")
        try:
            pickle.dumps(item)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "cannot be sent"
            return f"an item cannot be pickled ({type(exc).__name__}: {exc})"
    return None


class _Failure:
    """An exception raised in a worker, carried back as plain data (some of the library's exceptions,
    e.g. :class:`~distllm_env.errors.ScenarioError`, do not unpickle by themselves)."""

    def __init__(self, exc: BaseException):
        self.cls, self.args, self.state = type(exc), exc.args, dict(getattr(exc, "__dict__", {}))

    def rebuild(self) -> BaseException:
        try:
            exc = self.cls.__new__(self.cls)
            BaseException.__init__(exc, *self.args)
            exc.__dict__.update(self.state)
            return exc
        except Exception:  # noqa: BLE001 - an exotic exception type: keep its text
            return RuntimeError(f"{self.cls.__name__}: {' '.join(map(str, self.args))}")


def _call(fn: Callable, item: Any) -> Any:
    try:
        return fn(item)
    except Exception as exc:  # noqa: BLE001 - re-raised in the caller by _unwrap
        return _Failure(exc)


def _unwrap(results: list) -> list:
    for r in results:
        if isinstance(r, _Failure):
            raise r.rebuild()
    return results


def _user_paths() -> list[str]:
    """This process's import directories outside the interpreter's own (the current directory that
    ``module:Class`` policies come from, a test folder): a local Ray's workers get them too."""
    own = tuple(os.path.join(os.path.realpath(p), "") for p in {sys.prefix, sys.base_prefix, sys.exec_prefix})
    out = []
    for p in sys.path:
        real = os.path.realpath(p or os.getcwd())
        if (os.path.isdir(real) and not os.path.join(real, "").startswith(own) and "site-packages" not in real
                and real not in out):
            out.append(real)
    return out


def _ray_map(fn: Callable, items: list, workers: int, ray_address: str | None) -> list:
    try:
        import ray
    except ImportError:
        raise ScenarioError("--backend", "ray needs Ray: pip install 'distllm-env[rllib]'") from None
    started = False
    ray_address = ray_address or os.environ.get("RAY_ADDRESS") or None     # as `train --backend rllib`
    if not ray.is_initialized():
        if ray_address and ray_address != "local":
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        else:   # a truly local Ray: never a `ray start` cluster of this machine
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                         _user_paths() + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}})
        started = True
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_call)
        fn_ref = ray.put(fn)
        return _unwrap(ray.get([task.remote(fn_ref, item) for item in items]))
    finally:
        if started:
            ray.shutdown()


def map_seeds(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 1, backend: str = "process",
              ray_address: str | None = None) -> list:
    """``[fn(item) for item in items]``, computed by ``workers`` processes or Ray tasks; same order.

    ``fn`` must be a module-level function (importable by the workers); ``items`` are sent by pickle
    (process backend) or by Ray's serializer.  With the process backend, ``workers=1`` (or one item) runs
    in the calling process; items that cannot be pickled (see the module docstring) run serially with a
    :class:`ParallelFallbackWarning`.  With ``backend="ray"``, ``ray_address`` (else ``RAY_ADDRESS``)
    names an existing cluster (its free CPUs decide the parallelism; ``workers`` is not used); without
    either, a local Ray with ``workers`` CPUs is started and shut down again.  An exception raised by ``fn`` is re-raised here with
    its type and message (the first one, in item order).

    Raises:
        ScenarioError: ``workers`` < 1, an unknown ``backend``, or ``backend="ray"`` without Ray installed
            (path ``--backend``, naming the ``rllib`` extra).
    """
    check_parallel(workers, backend)
    items = list(items)
    if backend == "ray":
        return _ray_map(fn, items, workers, ray_address)
    if workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    reason = _unpicklable_reason(items)
    if reason is not None:
        warnings.warn(f"running serially instead of on {workers} workers: {reason}", ParallelFallbackWarning,
                      stacklevel=3)
        return [fn(item) for item in items]
    ctx = multiprocessing.get_context("spawn")
    n = min(workers, len(items))
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        # contiguous chunks: fewer round trips; pool.map keeps the items' order
        chunk = max(1, len(items) // (4 * n))
        with _main_not_rerun():     # the workers start (all of them) when the tasks are submitted
            results = pool.map(_call, [fn] * len(items), items, chunksize=chunk)
        return _unwrap(list(results))


@contextlib.contextmanager
def _main_not_rerun():
    """While worker processes start: hide ``__main__``'s file and spec from ``multiprocessing.spawn``, so
    the workers do not re-run the caller's script (an unguarded script would recurse; ``python -`` has
    no file to run).  Nothing from ``__main__`` is sent to them (:func:`_unpicklable_reason`)."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        for k in saved:
            if k == "__spec__":
                main.__spec__ = None
            else:
                del main.__dict__[k]
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


def add_parallel_args(p: argparse.ArgumentParser) -> None:
    """``--workers N``, ``--backend process|ray`` and ``--ray-address ADDR`` for evaluation commands."""
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run seeds in N parallel worker processes (default 1: serial); results are identical")
    p.add_argument("--backend", dest="parallel_backend", choices=BACKENDS, default="process",
                   help="process: a local process pool of --workers; ray: Ray tasks on --ray-address, or on a "
                        "local Ray with --workers CPUs (needs the rllib extra)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --backend ray: an existing cluster (auto, HOST:PORT or ray://HOST:10001)")


def parallel_from(args: argparse.Namespace) -> dict:
    """``{"workers", "backend", "ray_address"}`` keyword arguments from :func:`add_parallel_args`' flags.

    Raises:
        ScenarioError: ``--workers`` < 1, or ``--ray-address`` without ``--backend ray``."""
    kw = {"workers": args.workers, "backend": args.parallel_backend, "ray_address": args.ray_address}
    check_parallel(kw["workers"], kw["backend"])
    if kw["ray_address"] and kw["backend"] != "ray":
        raise ScenarioError("--ray-address", "only used with --backend ray")
    return kw


def default_workers() -> int:
    """The CPUs this process may use (``os.sched_getaffinity`` where available)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


__all__ = ["BACKENDS", "ParallelFallbackWarning", "add_parallel_args", "check_parallel", "default_workers",
           "map_seeds", "parallel_from"]
