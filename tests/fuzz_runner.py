"""Runs fuzz cases (:mod:`fuzzing`) in forked, resource-capped worker processes and classifies them.

Each case runs in its own ``fork``-context process (the parent imports everything first, so a fork is
cheap), in its own temporary directory, with ``RLIMIT_AS`` capped at the parent's address space plus
``mem_bytes`` and a wall-clock budget of ``timeout_s`` (the process is killed past it).  Outcomes:

* ``success`` — the run finished and the result passed the invariant checks (every request recorded
  exactly once; a completed request has finite times in order and positive latency);
* ``clean`` — a :class:`~distllm_env.errors.DistLLMError` whose message is one line of ≤ 500 characters
  (CLI: exit code 2 and one stderr line);
* ``cli-exit-1`` — the CLI exited 1 with one error line (a DistLLMError that is not a ScenarioError);
* failures: ``uncaught`` (any other exception), ``messy-error`` (a DistLLMError over several lines or
  too long, or a CLI exit with several stderr lines), ``timeout``, ``memory``
  (MemoryError under the cap), ``crash`` (the worker died), ``security`` (the marker file was created),
  ``silent-accept`` (success on a case no correct loader may accept), ``wrongly-refused`` (a clean error
  on a meaning-preserving rewrite of a preset), ``inconsistent`` (CLI: ``scenarios validate`` and
  ``simulate`` disagree on whether the input is bad, exit 2), ``invalid-result`` (an invariant
  failed), ``warning`` (a RuntimeWarning, e.g. numpy's, on an otherwise passing case).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import math
import multiprocessing as mp
import os
import re
import resource
import shutil
import tempfile
import time
import traceback
import warnings
from multiprocessing.connection import wait as mp_wait

from fuzzing import MARKER, Case

#: ``cli-exit-1`` (one ``distllm-env: error: <Type>: …`` line, exit 1) is a one-line DistLLMError that is
#: not bad input (docs/contracts.md §5: "1 anything else"), e.g. a placement that cannot fit; it is counted
#: apart so that bad input reaching exit 1 stays visible.  Move it to FAIL_OUTCOMES to require exit 0 or 2.
OK_OUTCOMES = ("success", "clean", "cli-exit-1")
FAIL_OUTCOMES = ("security", "memory", "timeout", "crash", "uncaught", "messy-error", "inconsistent",
                 "silent-accept", "wrongly-refused", "invalid-result", "warning")
MAX_MESSAGE_CHARS = 500
STACK_FILE = "fuzz-stack.txt"


def preload() -> None:
    """Import everything a case may need, once, before forking workers."""
    import gymnasium  # noqa: F401 - imported once before forking

    import distllm_env  # noqa: F401
    import distllm_env.cli
    import distllm_env.envs  # noqa: F401
    from distllm_env.policies import PLACEMENT_POLICIES, ROUTING_POLICIES, load_object

    for path in list(PLACEMENT_POLICIES.values()) + list(ROUTING_POLICIES.values()):
        load_object(path)
    for module in distllm_env.cli.COMMAND_MODULES:
        with contextlib.suppress(Exception):
            __import__(module)


def _location(tb) -> str:
    """The deepest traceback frame inside distllm-env (else the deepest frame), as ``file:line func``."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if "distllm_env" in f.filename or "/baselines/" in f.filename
            or "/agents/" in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    parts = f.filename.replace("\\", "/").split("/")
    for anchor in ("distllm_env", "baselines", "agents", "site-packages"):
        if anchor in parts:
            parts = parts[parts.index(anchor):]
            break
    return f"{'/'.join(parts[-3:])}:{f.lineno} {f.name}"


def _short(text: str, n: int = 300) -> str:
    text = str(text)
    return text if len(text) <= n else text[:n] + f"…(+{len(text) - n} chars)"


def _check_result(res, expected_n) -> str | None:
    """An invariant violation in a SimulationResult, or None."""
    ids = [r.request_id for r in res.records]
    if len(ids) != len(set(ids)):
        return "a request id recorded twice"
    if expected_n is not None and len(ids) != expected_n:
        return f"{len(ids)} records for {expected_n} requests"
    for r in res.records:
        if r.completed:
            times = (r.arrival_s, r.start_s, r.first_token_s, r.completion_s)
            if not all(math.isfinite(t) for t in times):
                return f"request {r.request_id} completed with a non-finite time {times}"
            if not (r.arrival_s <= r.start_s <= r.first_token_s <= r.completion_s):
                return f"request {r.request_id} completed with times out of order {times}"
            if not r.completion_s > r.arrival_s:
                return f"request {r.request_id} completed in zero time (arrival {r.arrival_s!r})"
    for key in ("mean_per_token_time_s", "ttft_p95_s"):
        x = res.summary.get(key)
        if res.summary.get("num_completed") and isinstance(x, float) and not math.isfinite(x):
            return f"summary {key} = {x} with completed requests"
    return None


def _run_api(case: Case, path: str) -> dict:
    from distllm_env import load_scenario, simulate
    from distllm_env.instance import build_instance

    sc = load_scenario(path, overrides=case.overrides)
    build_instance(sc, seed=0)
    res = simulate(sc, case.placement, case.routing, seed=0)
    n = sc.workload.num_requests if sc.workload.arrival == "poisson" else None
    bad = _check_result(res, n)
    return {"outcome": "invalid-result", "message": bad} if bad else {"outcome": "success"}


def _run_env(case: Case, path: str) -> dict:
    import numpy as np

    from distllm_env.envs.routing import RequestRoutingEnv

    env = RequestRoutingEnv(scenario=path, overrides=case.overrides)
    _, info = env.reset(seed=0)
    for _ in range(5):
        mask = np.asarray(info.get("action_mask", [1]))
        _, _, term, trunc, info = env.step(int(mask.argmax()))
        if term or trunc:
            break
    return {"outcome": "success"}


def _run_cli(case: Case, path: str) -> dict:
    from distllm_env.cli import main

    sets = [f"--set={o}" for o in case.overrides]
    argv = ["simulate", "--scenario", path] + sets
    if case.placement:
        argv.append(f"--placement={case.placement}")
    if case.routing:
        argv.append(f"--routing={case.routing}")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as verr:
        rc_validate = main(["scenarios", "validate", path] + sets)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    lines = err.getvalue().strip().splitlines()
    msg = err.getvalue().strip()
    # issue 9 kind 5: a scenario validates and simulates consistently (bad input: exit 2 in both)
    if not (case.placement or case.routing) and (rc_validate == 2) != (rc == 2) and rc in (0, 1, 2):
        return {"outcome": "inconsistent", "type": f"validate exit {rc_validate}, simulate exit {rc}",
                "location": "cli", "message": _short(f"validate: {verr.getvalue().strip()} | simulate: {msg}")}
    if rc == 0:
        return {"outcome": "success"}
    if rc == 2 and len(lines) == 1 and len(msg) <= MAX_MESSAGE_CHARS + 40:
        return {"outcome": "clean", "message": _short(msg)}
    if rc == 1 and len(lines) == 1 and msg.startswith("distllm-env: error: ") \
            and len(msg) <= MAX_MESSAGE_CHARS + 60:
        return {"outcome": "cli-exit-1", "message": _short(msg), "type": f"exit {rc}",
                "location": msg.split(":")[2].strip() if msg.count(":") >= 2 else "?"}
    return {"outcome": "messy-error", "message": _short(msg), "type": f"exit {rc}, {len(lines)} stderr lines",
            "location": "cli"}


def execute(case: Case, workdir: str) -> dict:
    """Run one case in ``workdir`` in this process and classify it (no timeout or memory cap here)."""
    from distllm_env.errors import DistLLMError

    marker = os.path.join(workdir, "marker")
    for name, content in case.aux_files.items():
        with open(os.path.join(workdir, name), "wb") as fh:
            fh.write(content.replace(MARKER.encode(), marker.encode()))
    path = os.path.join(workdir, "scenario.yaml")
    with open(path, "wb") as fh:
        fh.write(case.data.replace(MARKER.encode(), marker.encode()))
    case.overrides = [o.replace(MARKER, marker) for o in case.overrides]
    runner = {"api": _run_api, "cli": _run_cli, "env": _run_env}[case.path]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = runner(case, path)
        except DistLLMError as exc:
            msg = str(exc)
            one_line = "\n" not in msg.strip() and len(msg) <= MAX_MESSAGE_CHARS
            result = {"outcome": "clean" if one_line else "messy-error", "type": type(exc).__name__,
                      "message": _short(msg), "location": _location(exc.__traceback__)}
        except MemoryError as exc:
            result = {"outcome": "memory", "type": "MemoryError", "message": _short(exc),
                      "location": _location(exc.__traceback__)}
        except BaseException as exc:  # noqa: BLE001 - that is the point
            result = {"outcome": "uncaught", "type": type(exc).__name__, "message": _short(exc),
                      "location": _location(exc.__traceback__)}
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    if runtime:
        w = runtime[0]
        result["warning"] = f"{os.path.basename(w.filename)}:{w.lineno} {_short(w.message, 160)}"
    if result["outcome"] == "success" and case.must_fail:
        result = {**result, "outcome": "silent-accept"}
    if result["outcome"] != "success" and case.must_succeed and result["outcome"] in OK_OUTCOMES:
        result = {**result, "outcome": "wrongly-refused"}
    if result["outcome"] in OK_OUTCOMES and runtime:
        result.update(outcome="warning", type="RuntimeWarning", location=result["warning"].split(" ")[0],
                      message=result["warning"])
    return result


def _child(case: Case, workdir: str, conn, mem_bytes: int | None, timeout_s: float) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1), os.dup2(devnull, 2)     # HiGHS banners etc.
    os.chdir(workdir)
    stack_file = open(os.path.join(workdir, STACK_FILE), "w")   # where a run past its budget is stuck
    faulthandler.dump_traceback_later(max(0.1, timeout_s - 0.5), file=stack_file)
    if mem_bytes:
        with contextlib.suppress(Exception):
            with open("/proc/self/status") as fh:
                vm = int(re.search(r"VmSize:\s+(\d+) kB", fh.read()).group(1)) * 1024
            resource.setrlimit(resource.RLIMIT_AS, (vm + mem_bytes, resource.RLIM_INFINITY))
    try:
        result = execute(case, workdir)
    except BaseException as exc:  # noqa: BLE001
        result = {"outcome": "crash", "type": type(exc).__name__, "message": _short(exc), "location": "runner"}
    while True:      # reap anything the case spawned (a Popen payload) before the marker check
        try:
            os.wait()
        except ChildProcessError:
            break
        except Exception:  # noqa: BLE001
            break
    try:
        conn.send(result)
    except Exception:  # noqa: BLE001 - e.g. an unpicklable message
        conn.send({"outcome": result.get("outcome", "crash"), "type": str(result.get("type")),
                   "message": repr(result.get("message"))[:300], "location": str(result.get("location"))})
    conn.close()
    os._exit(0)


def _stuck_location(workdir: str) -> str:
    """The innermost distllm-env frame of the faulthandler dump written just before a timeout."""
    try:
        with open(os.path.join(workdir, STACK_FILE)) as fh:
            text = fh.read()
    except OSError:
        return "?"
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', text)   # most recent call first
    for filename, line, func in frames:
        if "distllm_env" in filename or "/baselines/" in filename or "/agents/" in filename:
            parts = filename.split("/")
            for anchor in ("distllm_env", "baselines", "agents"):
                if anchor in parts:
                    parts = parts[parts.index(anchor):]
                    break
            return f"{'/'.join(parts[-3:])}:{line} {func}"
    return f"{frames[0][0].split('/')[-1]}:{frames[0][1]} {frames[0][2]}" if frames else "?"


def run_cases(cases, jobs: int = 1, timeout_s: float = 5.0, mem_bytes: int | None = 2 << 30, progress=None):
    """Run ``cases`` with ``jobs`` workers; yield ``(case, result)`` in completion order.  ``result``
    has ``outcome`` and, for failures, ``type``, ``message``, ``location``; plus ``seconds``."""
    preload()
    ctx = mp.get_context("fork")
    pending = list(cases)[::-1]
    running: dict = {}   # conn -> (case, proc, workdir, t0)
    while pending or running:
        while pending and len(running) < jobs:
            case = pending.pop()
            workdir = tempfile.mkdtemp(prefix=f"fuzz{case.index}-")
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(case, workdir, send, mem_bytes, timeout_s), daemon=True)
            proc.start()
            send.close()
            running[recv] = (case, proc, workdir, time.monotonic())
        now = time.monotonic()
        next_deadline = min(t0 + timeout_s for (_, _, _, t0) in running.values())
        ready = mp_wait(list(running), timeout=max(0.0, next_deadline - now))
        now = time.monotonic()
        for conn in list(running):
            case, proc, workdir, t0 = running[conn]
            result = None
            if conn in ready:
                try:
                    result = conn.recv()
                except (EOFError, OSError):
                    proc.join(1.0)
                    result = {"outcome": "crash", "type": f"exit code {proc.exitcode}",
                              "message": "worker died without a result", "location": "?"}
            elif now - t0 >= timeout_s:
                result = {"outcome": "timeout", "type": "Timeout", "message": f"ran past {timeout_s:g} s",
                          "location": _stuck_location(workdir)}
            if result is None:
                continue
            if proc.is_alive():
                proc.kill()
            proc.join(5.0)
            conn.close()
            if os.path.exists(os.path.join(workdir, "marker")):
                result = {"outcome": "security", "type": "marker file created", "location": "?",
                          "message": f"a scenario created a file (was: {result['outcome']} "
                                     f"{result.get('type', '')} {result.get('message', '')})"[:400]}
            shutil.rmtree(workdir, ignore_errors=True)
            result["seconds"] = round(now - t0, 3)
            del running[conn]
            if progress:
                progress(case, result)
            yield case, result


def signature(case: Case, result: dict) -> str:
    """Grouping key of a failure: outcome, exception type and location (the innermost distllm-env
    frame).  Where there is no location (a timeout with no frame of ours), the mutation kinds."""
    loc = str(result.get("location", "?"))
    return " | ".join([result["outcome"], str(result.get("type", "")), loc if loc != "?" else case.kinds])


def group_failures(pairs) -> list[tuple[str, list]]:
    """``[(signature, [(case, result), …]), …]`` for the failures, most frequent first; within a
    group the example with the smallest scenario file first."""
    groups: dict[str, list] = {}
    for case, r in pairs:
        if r["outcome"] not in OK_OUTCOMES:
            groups.setdefault(signature(case, r), []).append((case, r))
    for items in groups.values():
        items.sort(key=lambda cr: (len(cr[0].mutations), len(cr[0].data)))
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def summarize(pairs) -> str:
    """A text summary: counts by outcome, then each failure signature with the mutation kinds that
    reached it and one example (fewest mutations, smallest file)."""
    from collections import Counter

    counts = Counter(r["outcome"] for _, r in pairs)
    lines = [", ".join(f"{k}: {v}" for k, v in counts.most_common())]
    for sig, items in group_failures(pairs):
        case, r = items[0]
        kinds = Counter(m.kind for c, _ in items for m in c.mutations)
        lines.append(f"{len(items):4d}  {sig}\n      kinds: {dict(kinds.most_common())}\n"
                     f"      e.g. case {case.index} via {case.path}: {case.describe()[:300]}\n"
                     f"      -> {' '.join(str(r.get('message', '')).split())[:300]}")
    return "\n".join(lines)


__all__ = ["FAIL_OUTCOMES", "OK_OUTCOMES", "execute", "group_failures", "run_cases", "signature", "summarize"]
