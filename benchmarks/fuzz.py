"""Scenario fuzzer (issue 9): N mutated scenario files drawn from all shipped presets, each loaded,
instantiated and simulated (or run through ``distllm-env simulate`` / a RequestRouting env) in a
forked worker with a wall-clock budget and a memory cap.  Prints counts by outcome and the failure
signatures (outcome | exception type | innermost distllm-env frame), with the mutation kinds that
reached each and one reproducer per signature written to ``--repro-dir`` (default
``benchmarks/out/fuzz/``).  The mutation engine and the runner are shared with the CI test
(``tests/test_fuzz.py``): cases in ``tests/fuzzing.py`` (mutations in ``tests/fuzz_values.py`` and
``tests/fuzz_text.py``), runner and outcome definitions in ``tests/fuzz_runner.py``.  A case is fixed by
``(seed, index)``: ``fuzzing.make_case(seed, index)`` regenerates it alone.

Usage: python benchmarks/fuzz.py [--cases 5000] [--seed 0] [--jobs 1] [--timeout-s 5] [--mem-gib 2]
                                 [--out report.json]

A reproducer ``NN-<outcome>.yaml`` is the case's scenario file; its companion ``.txt`` gives the
command line (with the ``--set`` overrides and policies of the case) and the expected outcome.  Any
auxiliary file (``fuzz.graph``, ``fuzz.csv``, ``fuzz_petals.json``) is written into a per-reproducer
folder next to it.  Exit status: 0 when every outcome is ``success`` or ``clean``, else 1.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_runner import OK_OUTCOMES, group_failures, run_cases, summarize  # noqa: E402
from fuzzing import MARKER, make_cases  # noqa: E402

MARKER_PATH = "/tmp/distllm-fuzz-marker"


def _scrub(value):
    """A result field with the per-case temporary folder replaced by ``<tmp>``."""
    return re.sub(r"/tmp/fuzz\d+-\w+", "<tmp>", value) if isinstance(value, str) else value


def write_reproducers(groups, repro_dir: Path, limit: int) -> list[dict]:
    repro_dir.mkdir(parents=True, exist_ok=True)
    for old in repro_dir.glob("[0-9][0-9]-*"):     # reproducers of an earlier run
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    out = []
    for n, (sig, items) in enumerate(groups[:limit], start=1):
        case, result = items[0]
        slug = f"{n:02d}-{result['outcome']}"
        folder = repro_dir
        if case.aux_files:
            folder = repro_dir / slug
            folder.mkdir(exist_ok=True)
            for name, content in case.aux_files.items():
                (folder / name).write_bytes(content.replace(MARKER.encode(), MARKER_PATH.encode()))
        yaml_path = folder / f"{slug}.yaml"
        yaml_path.write_bytes(case.data.replace(MARKER.encode(), MARKER_PATH.encode()))
        rel = yaml_path.relative_to(ROOT) if yaml_path.is_relative_to(ROOT) else yaml_path
        argv = ["distllm-env", "simulate", "--scenario", str(rel)]
        argv += [f"--set={o.replace(MARKER, MARKER_PATH)}" for o in case.overrides]
        if case.placement:
            argv.append(f"--placement={case.placement}")
        if case.routing:
            argv.append(f"--routing={case.routing}")
        command = " ".join(shlex.quote(a) for a in argv)
        validate = " ".join(shlex.quote(a) for a in ["distllm-env", "scenarios", "validate", str(rel)]
                            + [f"--set={o.replace(MARKER, MARKER_PATH)}" for o in case.overrides])
        (repro_dir / f"{slug}.txt").write_text(
            f"signature: {sig}\ncases: {len(items)}\nexample: case {case.index} (seed {case.seed}) via {case.path}\n"
            f"mutations: {case.describe()}\nresult: {result.get('type', '')}: {result.get('message', '')}\n"
            f"reproduce: {command}\nvalidate: {validate}\n"
            + (f"security marker: {MARKER_PATH}\n" if case.security else ""))
        out.append({"signature": sig, "count": len(items), "reproducer": str(rel), "command": command,
                    "example_case": case.index, "via": case.path,
                    "kinds": dict(Counter(m.kind for c, _ in items for m in c.mutations).most_common()),
                    "message": result.get("message", "")})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="index of the first case (cases are seed+index)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout-s", type=float, default=5.0, help="wall-clock budget per case")
    ap.add_argument("--mem-gib", type=float, default=2.0, help="address-space cap per case above the parent's")
    ap.add_argument("--out", default=None, help="write a JSON report here")
    ap.add_argument("--repro-dir", default=str(ROOT / "benchmarks" / "out" / "fuzz"))
    ap.add_argument("--top", type=int, default=40, help="signatures to write reproducers for")
    args = ap.parse_args(argv)

    cases = make_cases(args.seed, args.cases, args.start)
    t0 = time.perf_counter()
    done = []

    def progress(case, result):
        done.append(1)
        if len(done) % 250 == 0:
            print(f"  {len(done)}/{len(cases)} cases, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    pairs = list(run_cases(cases, jobs=args.jobs, timeout_s=args.timeout_s, mem_bytes=int(args.mem_gib * 2 ** 30),
                           progress=progress))
    wall = time.perf_counter() - t0
    pairs.sort(key=lambda cr: cr[0].index)
    counts = Counter(r["outcome"] for _, r in pairs)
    by_kind: dict[str, Counter] = {}
    for case, r in pairs:
        for kind in {m.kind for m in case.mutations}:
            by_kind.setdefault(kind, Counter())[r["outcome"]] += 1
    groups = group_failures(pairs)
    repros = write_reproducers(groups, Path(args.repro_dir), args.top)

    print(f"{len(pairs)} cases (seed {args.seed}, jobs {args.jobs}, {args.timeout_s:g} s and "
          f"{args.mem_gib:g} GiB per case) in {wall:.0f} s")
    print(summarize(pairs))
    print("\noutcomes by mutation kind (a case counts once for each kind it applies):")
    for kind, c in sorted(by_kind.items()):
        print(f"  {kind:16s} " + ", ".join(f"{k} {v}" for k, v in c.most_common()))
    print(f"\nreproducers for the top {len(repros)} signatures in {args.repro_dir}")
    for rep in repros:
        print(f"  {rep['count']:4d}  {rep['command']}")
    if args.out:
        report = {
            "cases": len(pairs), "seed": args.seed, "jobs": args.jobs, "timeout_s": args.timeout_s,
            "mem_gib": args.mem_gib, "wall_s": round(wall, 1), "counts": dict(counts),
            "by_kind": {k: dict(c) for k, c in by_kind.items()}, "signatures": repros,
            "outcome_by_index": {c.index: r["outcome"] for c, r in pairs},
            "failures": [{"index": c.index, "preset": c.preset, "via": c.path, "kinds": c.kinds,
                          "mutations": c.describe(), **{k: _scrub(v) for k, v in r.items()}}
                         for c, r in pairs if r["outcome"] not in OK_OUTCOMES],
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"report written to {args.out}")
    return 0 if all(r["outcome"] in OK_OUTCOMES for _, r in pairs) else 1


if __name__ == "__main__":
    sys.exit(main())
