"""Run one of JAX's test files with JAX's `check_grads` and with jaxcheck's, compare.

`jaxcheck.check_grads` claims to be a drop-in for `jax.test_util.check_grads`.
This script runs a JAX test file (such as `tests/lax_autodiff_test.py` of the JAX
repository, whose version matches the installed jax) under pytest twice, each in
its own subprocess: the reference arm with JAX's own `check_grads`, and the
jaxcheck arm with every `check_grads` the test file can reach routed to
`jaxcheck.check_grads`. The routing and the per-call records are done by the
pytest plugin `_conformance_plugin.py` beside this script.

Usage (from the repository root)::

    python tools/jax_conformance.py PATH/TO/lax_autodiff_test.py
    python tools/jax_conformance.py TEST_FILE -k "testConv or testDot"
    python tools/jax_conformance.py TEST_FILE --only jaxcheck --json out.json
    python tools/jax_conformance.py TEST_FILE --timeout 3600
    python tools/jax_conformance.py --load out.json  # summarize an earlier run
    python tools/jax_conformance.py TEST_FILE --only jax --mutants 60  # mutation arm
    python tools/jax_conformance.py TEST_FILE --repeat 2  # each arm twice, in turn

It prints, per arm, the tests passed/failed/skipped and the `check_grads` calls
made; whether the jaxcheck arm made as many calls as the reference arm; the tests
that pass with JAX's `check_grads` but fail with jaxcheck's, grouped by the first
line of the error (numbers blanked to `#`, dict contents to `{…}`); the time per
call of the calls that passed in both arms (matched by test id and call index);
and how many jaxcheck calls fell back to evaluating one at a time or to fast mode.

The time of a call is its wall time. A shared machine's speed drifts over the
minutes an arm takes, and the arms run one after the other, so `--repeat N` runs
them N times in turn (JAX's, jaxcheck's, JAX's, ...) and takes each call's least
time over its arm's runs; outcomes and counts are those of each arm's first run.

By default a failing `check_grads` call does not stop its test: it is recorded,
the test runs to its end, and then fails with the first such error. So every
call is made in both arms, and the call counts compare routing, not failures.
`--stop-at-first` raises at once instead, as a plain drop-in does.

The mutation arm (`--mutants N`, off by default) measures misses, which JAX's
suite cannot: its functions have no bugs, so a checker that always passed would
pass it all. After the reference arm, N of the calls that passed there are
sampled, deterministically and spread over (dtype, order) strata and over the
file, and a third subprocess runs only the tests that make them. There each
sampled call is not made as such: its function is wrapped in mutants, `custom_jvp`
wrappers whose primal output is the function's own and whose JVP rule (so also its
transpose, the VJP) carries a planted error, and both JAX's `check_grads` and
jaxcheck's run on each mutant with the call's arguments, order, modes and
tolerances (see `make_mutant` and `mutate_call` in the plugin):

- "scale": the output tangent times 1 + δ, for δ = 1, 1e-1, ..., 1e-6 (`--deltas`),
  downwards until the dtype cannot hold the error or no tool catches it
  (`--full-ladder` runs the whole ladder); an error in the first derivatives;
- "scale_vjp": the VJP alone times 1 + δ (a `custom_vjp` wrapper, an error in a
  transpose rule), checked in "rev" mode only, the same ladder;
- "scale2" (calls of order >= 2): the JVP exact, its derivative (the second-order
  term) times 1 + δ, the same ladder;
- "drop": one input's tangent zeroed (a term dropped), or, for a function of one
  input, the tangent of every other entry of it;
- "swap": two entries of the output tangent swapped.

A tool catches a mutant when it raises an AssertionError (jaxcheck's
GradCheckError is one); any other exception is an error, no verdict. A call is
skipped when its function has no JVP or the wrapper without an error fails with
either tool. It prints the mutants caught per tool and kind, every mutant JAX
catches and jaxcheck misses (there should be none), and per dtype the smallest δ
each tool catches on every sampled call.

Exit status: 0 when the arms ran and (with both arms) made the same number of
calls; 1 when an arm could not run to its end or the call counts differ, or when
the mutation arm found a mutant JAX's `check_grads` catches and jaxcheck's misses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ARMS = ("jax", "jaxcheck")
MUTANT_ARM = "mutants"
DELTAS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # as the plugin's DELTAS
# as the plugin's MUTANT_KINDS
MUTANT_KINDS = ("scale", "scale_vjp", "scale2", "drop", "swap")
LADDER_KINDS = {
    "scale": "JVP and VJP",
    "scale_vjp": "VJP only, checked in rev mode",
    "scale2": "second-order term",
}
TABLE_DTYPES = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
PLUGIN = "_conformance_plugin"
TOOLS_DIR = Path(__file__).resolve().parent
TOP_GROUPS = 30
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_DICT = re.compile(r"\{[^{}]*\}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run a JAX test file with JAX's check_grads and jaxcheck's.",
    )
    parser.add_argument(
        "test_file", type=Path, nargs="?", help="a JAX test file to run"
    )
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument("--only", choices=ARMS, help="run one arm only")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--load",
        type=Path,
        metavar="JSON",
        help="print the summary of the raw results an earlier --json wrote",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=7200.0,
        help="seconds each arm may run before it is killed (default 7200)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the arms N times in turn and time each call by its least time"
        " (default 1)",
    )
    parser.add_argument(
        "--stop-at-first",
        action="store_true",
        help="a failing check_grads call ends its test at once",
    )
    parser.add_argument(
        "--jaxcheck-path",
        type=Path,
        metavar="DIR",
        help="import jaxcheck from DIR (a folder holding the jaxcheck package, such"
        " as a `git worktree` of a commit) instead of the installed one",
    )
    parser.add_argument(
        "--x64",
        action="store_true",
        help="run every arm with JAX_ENABLE_X64=1 (JAX's tests then use float64"
        " and complex128 too)",
    )
    parser.add_argument(
        "--mutants",
        type=int,
        default=0,
        metavar="N",
        help="run the mutation arm on N sampled calls of the reference arm"
        " (default 0: off)",
    )
    parser.add_argument(
        "--deltas",
        type=lambda text: tuple(float(d) for d in text.split(",")),
        default=DELTAS,
        metavar="D,D,...",
        help="the relative errors of the scale mutants, largest first"
        " (default 1,1e-1,1e-2,...,1e-6)",
    )
    parser.add_argument(
        "--full-ladder",
        action="store_true",
        help="try every delta even after one that no tool catches",
    )
    parser.add_argument(
        "--mutant-max-time",
        type=float,
        metavar="S",
        help="sample only calls that took at most S seconds in the reference arm",
    )
    parser.add_argument(
        "--pytest-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for pytest (repeatable)",
    )
    return parser.parse_args(argv)


def pytest_command(
    args: argparse.Namespace, ini: Path, targets: list[str] | None = None
) -> list[str]:
    """The pytest command of one arm: the test file alone (or the tests of it
    that `targets` names, node ids), with an empty ini file so that no project's
    pytest settings apply, and the plugin loaded early."""
    test_file = args.test_file.resolve()
    if targets:
        paths = [f"{test_file}::{nodeid.split('::', 1)[1]}" for nodeid in targets]
    else:
        paths = [str(test_file)]
    command = [
        sys.executable,
        "-m",
        "pytest",
        *paths,
        "-c",
        str(ini),
        "--rootdir",
        str(test_file.parent),
        "-p",
        PLUGIN,
        "-p",
        "no:cacheprovider",
        "-p",
        "no:jaxcheck",  # jaxcheck's own plugin: the reference arm never imports it
        "-q",
    ]
    if args.keyword and not targets:
        command += ["-k", args.keyword]
    return command + args.pytest_arg


def run_arm(
    arm: str,
    args: argparse.Namespace,
    workdir: Path,
    targets: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Runs pytest with `arm`'s check_grads and reads back the plugin's records.
    `targets` (node ids) restricts the run to those tests."""
    records, log = workdir / f"{arm}.jsonl", workdir / f"{arm}.log"
    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\n")
    env = dict(os.environ)
    env.update(
        JAX_CONFORMANCE_ARM=arm,
        JAX_CONFORMANCE_OUT=str(records),
        JAX_CONFORMANCE_DEFER="0" if args.stop_at_first else "1",
        PYTHONDONTWRITEBYTECODE="1",  # leave the test file's folder as it is
        **(extra_env or {}),
    )
    if args.x64:
        env["JAX_ENABLE_X64"] = "1"
    path = [str(TOOLS_DIR)]
    if args.jaxcheck_path and arm in ("jaxcheck", MUTANT_ARM):
        path.append(str(args.jaxcheck_path.resolve()))
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    command = pytest_command(args, ini, targets)
    shown = command if len(command) < 40 else [*command[:4], "...", *command[-8:]]
    print(f"[{arm}] {' '.join(shown)}", flush=True)
    start = time.perf_counter()
    timed_out = False
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            rc = process.wait()
    wall = time.perf_counter() - start
    result: dict[str, Any] = {
        "arm": arm,
        "command": command,
        "rc": rc,
        "timed_out": timed_out,
        "wall": wall,
        "patched": [],
        "impl": None,
        "finished": False,
        "calls": [],
        "tests": {},
        "mutant_calls": [],
    }
    if records.exists():
        for line in records.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            kind = record.pop("kind")
            if kind == "start":
                result["patched"] = record["patched"]
                result["impl"] = record["impl"]
            elif kind == "end":
                result["finished"] = True
            elif kind == "call":
                result["calls"].append(record)
            elif kind == "test":
                result["tests"][record["nodeid"]] = record
            elif kind == "mutant_call":
                result["mutant_calls"].append(record)
    result["log_tail"] = log.read_text(errors="replace").splitlines()[-40:]
    state = "timed out" if timed_out else f"exit code {rc}"
    print(f"[{arm}] {state} after {wall:.0f} s", flush=True)
    return result


def fastest_calls(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """An arm's first run, each call timed by its least time over `runs` (each
    call's times are kept in "times")."""
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for run in runs:
        for call in run["calls"]:
            times[(call["nodeid"], call["index"])].append(call["time"])
    first = runs[0]
    for call in first["calls"]:
        call["times"] = times[(call["nodeid"], call["index"])]
        call["time"] = min(call["times"])
    first["runs"] = len(runs)
    return first


def normalize(cause: str, width: int = 160) -> str:
    """The cause with its numbers, addresses and dict contents (such as a
    per-dtype tolerance) blanked, for grouping."""
    cause = _NUMBER.sub("#", _ADDRESS.sub("0x#", _DICT.sub("{…}", cause)))
    return cause if len(cause) <= width else cause[: width - 1] + "…"


def test_causes(arm: dict[str, Any]) -> dict[str, str]:
    """Why each failed test of `arm` failed: the first failing check_grads call's
    error if there is one, otherwise the first line of the test's own error."""
    first_failure: dict[str, str] = {}
    for call in arm["calls"]:
        if call["outcome"] != "ok":
            first_failure.setdefault(call["nodeid"], call["outcome"])
    causes = {}
    for nodeid, test in arm["tests"].items():
        if test["outcome"] == "failed":
            message = (test.get("message") or "").strip().splitlines()
            fallback = message[0] if message else f"failed in {test.get('when')}"
            causes[nodeid] = first_failure.get(nodeid, fallback)
    return causes


def arm_summary(arm: dict[str, Any]) -> dict[str, Any]:
    outcomes = Counter(t["outcome"] for t in arm["tests"].values())
    calls = arm["calls"]
    return {
        "passed": outcomes["passed"],
        "failed": outcomes["failed"],
        "skipped": outcomes["skipped"],
        "tests": len(arm["tests"]),
        "calls": len(calls),
        "calls_failed": sum(c["outcome"] != "ok" for c in calls),
        "call_time": sum(c["time"] for c in calls),
        "wall": arm["wall"],
        "rc": arm["rc"],
        "timed_out": arm["timed_out"],
        "finished": arm["finished"],
        "patched": arm["patched"],
        "impl": arm["impl"],
        "runs": arm.get("runs", 1),
        "fallbacks": dict(Counter(f for c in calls for f in c.get("fallbacks", []))),
        "calls_with_fallback": sum(bool(c.get("fallbacks")) for c in calls),
        "report_errors": dict(
            Counter(e for c in calls for e in c.get("report_errors", []))
        ),
    }


def compare(jax_arm: dict[str, Any], jc_arm: dict[str, Any]) -> dict[str, Any]:
    """Call counts, regressions grouped by cause, and timing of shared passes."""
    per_test = [Counter(c["nodeid"] for c in a["calls"]) for a in (jax_arm, jc_arm)]
    count_diffs = {
        nodeid: (per_test[0][nodeid], per_test[1][nodeid])
        for nodeid in set(per_test[0]) | set(per_test[1])
        if per_test[0][nodeid] != per_test[1][nodeid]
    }
    jax_tests, jc_tests = jax_arm["tests"], jc_arm["tests"]

    def outcome(tests: dict[str, Any], nodeid: str) -> str:
        return tests.get(nodeid, {}).get("outcome", "not run")

    regressions = sorted(
        n
        for n, t in jax_tests.items()
        if t["outcome"] == "passed" and outcome(jc_tests, n) == "failed"
    )
    not_run = sorted(
        n
        for n, t in jax_tests.items()
        if t["outcome"] == "passed" and outcome(jc_tests, n) == "not run"
    )
    fixed = sorted(
        n
        for n, t in jc_tests.items()
        if t["outcome"] == "passed" and outcome(jax_tests, n) == "failed"
    )
    causes = test_causes(jc_arm)
    groups: dict[str, list[str]] = defaultdict(list)
    for nodeid in regressions:
        groups[normalize(causes[nodeid])].append(nodeid)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))

    jax_calls = {(c["nodeid"], c["index"]): c for c in jax_arm["calls"]}
    pairs = [
        (jax_calls[key]["time"], c["time"])
        for c in jc_arm["calls"]
        if (key := (c["nodeid"], c["index"])) in jax_calls
        and c["outcome"] == "ok"
        and jax_calls[key]["outcome"] == "ok"
    ]
    timing: dict[str, Any] = {"matched_calls": len(pairs)}
    if pairs:
        jax_times, jc_times = zip(*pairs, strict=True)
        timing.update(
            jax_median=statistics.median(jax_times),
            jaxcheck_median=statistics.median(jc_times),
            jax_total=sum(jax_times),
            jaxcheck_total=sum(jc_times),
            median_of_ratios=statistics.median(jc / jx for jx, jc in pairs if jx > 0),
        )
        timing["median_ratio"] = timing["jaxcheck_median"] / timing["jax_median"]
        timing["total_ratio"] = timing["jaxcheck_total"] / timing["jax_total"]
    return {
        "count_match": len(jax_arm["calls"]) == len(jc_arm["calls"])
        and bool(jax_arm["calls"]),
        "count_diffs": count_diffs,
        "regressions": len(regressions),
        "regressions_not_run": not_run,
        "fixed": fixed,
        "groups": [
            {"cause": cause, "count": len(ids), "example": ids[0], "tests": ids}
            for cause, ids in ranked
        ],
        "timing": timing,
    }


def print_arm(name: str, s: dict[str, Any], log_tail: list[str]) -> None:
    state = "timed out" if s["timed_out"] else f"pytest exit code {s['rc']}"
    print(
        f"{name:9s}: {s['tests']} tests: {s['passed']} passed, {s['failed']} failed,"
        f" {s['skipped']} skipped; {s['calls']} check_grads calls"
        f" ({s['calls_failed']} failed, {s['call_time']:.1f} s in calls);"
        f" {s['wall']:.0f} s wall, {state}"
    )
    print(f"{'':9s}  check_grads is {s['impl']}")
    print(f"{'':9s}  routed in: {', '.join(s['patched']) or 'NONE'}")
    if s["timed_out"] or not s["finished"] or s["rc"] not in (0, 1):
        print(f"{'':9s}  the run did not end normally; last lines of its output:")
        for line in log_tail[-15:]:
            print(f"{'':11s}{line}")


def print_comparison(c: dict[str, Any], summaries: dict[str, Any]) -> None:
    n_jax, n_jc = summaries["jax"]["calls"], summaries["jaxcheck"]["calls"]
    if not (n_jax and n_jc):
        print("\nCall count: not compared, an arm made no check_grads calls.")
    elif c["count_match"]:
        print(f"\nCall count: OK, jaxcheck made {n_jc} calls, JAX's made {n_jax}.")
    else:
        print(
            f"\nCall count: MISMATCH, jaxcheck made {n_jc} calls but JAX's made"
            f" {n_jax} ({len(c['count_diffs'])} tests differ)."
        )
        for nodeid, (a, b) in sorted(c["count_diffs"].items())[:10]:
            print(f"  {nodeid}: JAX {a}, jaxcheck {b}")

    print(
        f"\nTests passing with JAX's check_grads but failing with jaxcheck's:"
        f" {c['regressions']} in {len(c['groups'])} groups by cause"
    )
    for group in c["groups"][:TOP_GROUPS]:
        print(f"  {group['count']:4d}  {group['cause']}")
        print(f"        e.g. {group['example']}")
    if len(c["groups"]) > TOP_GROUPS:
        rest = sum(g["count"] for g in c["groups"][TOP_GROUPS:])
        print(f"  ... {len(c['groups']) - TOP_GROUPS} more groups, {rest} tests")
    if c["regressions_not_run"]:
        print(
            f"Passing with JAX's but not run with jaxcheck's:"
            f" {len(c['regressions_not_run'])}"
        )
    if c["fixed"]:
        print(f"Failing with JAX's but passing with jaxcheck's: {len(c['fixed'])}")

    t = c["timing"]
    runs = summaries["jax"].get("runs", 1)
    least = f", each the least of {runs} runs" if runs > 1 else ""
    print(
        f"\nTime per call, {t['matched_calls']} calls that passed in both arms{least}:"
    )
    if t["matched_calls"]:
        print(
            f"  median JAX {t['jax_median'] * 1e3:.1f} ms, jaxcheck"
            f" {t['jaxcheck_median'] * 1e3:.1f} ms: ratio jaxcheck/JAX"
            f" {t['median_ratio']:.2f}x (median of per-call ratios"
            f" {t['median_of_ratios']:.2f}x)"
        )
        print(
            f"  total JAX {t['jax_total']:.1f} s, jaxcheck {t['jaxcheck_total']:.1f}"
            f" s: ratio {t['total_ratio']:.2f}x"
        )


def print_fallbacks(s: dict[str, Any]) -> None:
    kinds = s["fallbacks"]
    print(
        f"\njaxcheck calls whose report, warning or error mentions a fallback:"
        f" {s['calls_with_fallback']} (one at a time: {kinds.get('one_at_a_time', 0)},"
        f" fast mode: {kinds.get('fast_mode', 0)})"
    )
    for error, count in s.get("report_errors", {}).items():
        print(f"jaxcheck reports that raised when printed: {count} ({error})")


def _inexact_name(description: str) -> str | None:
    """The dtype name of one `_describe` entry ("float32[3, 4]", "float") when it
    is floating or complex."""
    name = description.split("[")[0]
    return name if name.startswith(("float", "bfloat", "complex")) else None


def stratum(call: dict[str, Any]) -> tuple[str, int]:
    """A call's (inexact argument dtypes as recorded, order)."""
    names = sorted({n for d in call["args"] if (n := _inexact_name(d))})
    return "+".join(names) or "none", call["order"]


def eligible_calls(
    calls: list[dict[str, Any]], max_time: float | None = None
) -> list[dict[str, Any]]:
    """The calls the mutation arm may sample: those that passed, have inexact
    arguments and (with `max_time`) took at most that long."""
    return [
        c
        for c in calls
        if c["outcome"] == "ok"
        and stratum(c)[0] != "none"
        and (max_time is None or c["time"] <= max_time)
    ]


def sample_calls(
    calls: list[dict[str, Any]], n: int, max_time: float | None = None
) -> list[dict[str, Any]]:
    """A deterministic sample of `n` of the `eligible_calls` of the reference
    arm for the mutation arm, shared out round-robin among the strata
    (dtypes, order), so that rare dtypes and orders get all their calls, and
    within a stratum evenly spaced in file order. In file order."""
    eligible = eligible_calls(calls, max_time)
    strata: dict[tuple[str, int], list[int]] = defaultdict(list)
    for position, call in enumerate(eligible):
        strata[stratum(call)].append(position)
    counts = dict.fromkeys(strata, 0)
    left = min(n, len(eligible))
    while left:
        for key in sorted(strata):
            if left and counts[key] < len(strata[key]):
                counts[key] += 1
                left -= 1
    chosen = []
    for key, positions in strata.items():
        k = counts[key]
        chosen += [positions[int((i + 0.5) * len(positions) / k)] for i in range(k)]
    return [eligible[p] for p in sorted(chosen)]


def run_mutation_arm(
    args: argparse.Namespace, workdir: Path, reference: dict[str, Any]
) -> dict[str, Any]:
    """Samples `args.mutants` calls of the reference arm and runs the mutation
    arm on the tests that make them."""
    sample = sample_calls(reference["calls"], args.mutants, args.mutant_max_time)
    settings = {
        "calls": [[c["nodeid"], c["index"]] for c in sample],
        "deltas": list(args.deltas),
        "full_ladder": args.full_ladder,
    }
    settings_file = workdir / "mutants.json"
    settings_file.write_text(json.dumps(settings))
    targets = list(dict.fromkeys(c["nodeid"] for c in sample))
    result = run_arm(
        MUTANT_ARM,
        args,
        workdir,
        targets=targets,
        extra_env={"JAX_CONFORMANCE_MUTANTS": str(settings_file)},
    )
    result["settings"] = settings
    result["eligible"] = len(eligible_calls(reference["calls"], args.mutant_max_time))
    return result


def _caught(entry: dict[str, Any], tool: str) -> bool:
    return entry.get(tool, {}).get("outcome") == "fail"


def smallest_caught(entries: list[dict[str, Any]], tool: str) -> float | None:
    """Of one call's run mutants of one ladder kind (largest delta first), the
    smallest delta that `tool` catches together with every larger one; None when
    it misses the largest."""
    smallest = None
    for entry in sorted(entries, key=lambda e: -e["delta"]):
        if not _caught(entry, tool):
            break
        smallest = entry["delta"]
    return smallest


def mutation_summary(
    mutant_arm: dict[str, Any], reference: dict[str, Any] | None
) -> dict[str, Any]:
    """Catches per tool and kind, JAX's catches that jaxcheck misses, and per
    dtype and ladder kind the smallest delta each tool catches on every call."""
    tools = ("jax", "jaxcheck")
    records = mutant_arm["mutant_calls"]
    sampled = {tuple(key) for key in mutant_arm.get("settings", {}).get("calls", [])}
    seen = {(r["nodeid"], r["index"]) for r in records}
    args_mismatch = []
    if reference is not None:
        ref_args = {(c["nodeid"], c["index"]): c["args"] for c in reference["calls"]}
        args_mismatch = [
            f"{r['nodeid']}#{r['index']}"
            for r in records
            if ref_args.get((r["nodeid"], r["index"])) != r["args"]
        ]
    ok = [r for r in records if r["status"] == "ok"]
    skipped = Counter(normalize(r.get("reason", "?")) for r in records if r not in ok)
    statuses: Counter[str] = Counter()
    caught = {t: Counter() for t in tools}
    errors = {t: Counter() for t in tools}
    run_per_kind: Counter[str] = Counter()
    both_error = 0
    misses, extra = [], Counter()
    times = dict.fromkeys(tools, 0.0)
    for record in ok:
        for entry in record["mutants"]:
            statuses[entry["status"]] += 1
            if entry["status"] != "run":
                continue
            outcomes = {t: entry[t]["outcome"] for t in tools}
            for t in tools:
                times[t] += entry[t]["time"]
            if all(o == "error" for o in outcomes.values()):
                both_error += 1
                continue
            run_per_kind[entry["kind"]] += 1
            for t in tools:
                caught[t][entry["kind"]] += outcomes[t] == "fail"
                errors[t][entry["kind"]] += outcomes[t] == "error"
            if outcomes["jax"] == "fail" and outcomes["jaxcheck"] != "fail":
                misses.append(
                    {
                        "nodeid": record["nodeid"],
                        "index": record["index"],
                        "function": record.get("function"),
                        "dtype": record["dtype"],
                        "args": record["args"],
                        "order": record["order"],
                        "modes": record["modes"],
                        "atol": record["atol"],
                        "rtol": record["rtol"],
                        "eps": record["eps"],
                        "kind": entry["kind"],
                        "delta": entry["delta"],
                        "planted": entry["planted"],
                        "jaxcheck": entry["jaxcheck"],
                        "jax": entry["jax"],
                    }
                )
            if outcomes["jaxcheck"] == "fail" and outcomes["jax"] != "fail":
                extra[entry["kind"]] += 1
    deltas = mutant_arm.get("settings", {}).get("deltas") or list(DELTAS)
    ladders: dict[str, dict[str, Any]] = {}
    for kind in LADDER_KINDS:
        per_dtype: dict[str, dict[str, Any]] = {}
        for record in ok:
            entries = [
                e
                for e in record["mutants"]
                if e["kind"] == kind
                and e["status"] == "run"
                and not all(e[t]["outcome"] == "error" for t in tools)
            ]
            if not entries:
                continue
            row = per_dtype.setdefault(
                record["dtype"],
                {"calls": 0, "floor": None, **{t: [] for t in tools}},
            )
            row["calls"] += 1
            low = min(e["delta"] for e in entries)
            row["floor"] = low if row["floor"] is None else min(row["floor"], low)
            for t in tools:
                row[t].append(smallest_caught(entries, t))
        for row in per_dtype.values():
            for t in tools:
                found = row.pop(t)
                known = sorted(d for d in found if d is not None)
                row[t] = {
                    "per_call": found,
                    # calls caught at each delta of the ladder and every larger one
                    "caught_at": {
                        str(d): sum(x is not None and x <= d for x in found)
                        for d in deltas
                    },
                    # None: some call's mutant was missed at the largest delta
                    "reliable": None if None in found else max(found),
                    "median": statistics.median_high(
                        [float("inf") if d is None else d for d in found]
                    ),
                    "missed_at_largest": found.count(None),
                    "smallest": known[0] if known else None,
                }
        ladders[kind] = per_dtype
    return {
        "sampled": len(sampled),
        "eligible": mutant_arm.get("eligible"),
        "recorded": len(records),
        "not_reached": sorted(f"{n}#{i}" for n, i in sampled - seen),
        "args_mismatch": args_mismatch,
        "mutated": len(ok),
        "skipped": dict(skipped),
        "strata": dict(Counter(f"{r['dtype']} order {r['order']}" for r in ok)),
        "statuses": dict(statuses),
        "run": dict(run_per_kind),
        "both_error": both_error,
        "caught": {t: dict(caught[t]) for t in tools},
        "errors": {t: dict(errors[t]) for t in tools},
        "misses": misses,
        "extra_catches": dict(extra),
        "deltas": deltas,
        "ladders": ladders,
        "time": times,
        "wall": mutant_arm["wall"],
    }


def _delta(value: float | None) -> str:
    if value is None:
        return "-"
    return "miss" if value == float("inf") else f"{value:.0e}"


def _dtype_order(dtype: str) -> tuple[int, str]:
    known = dtype in TABLE_DTYPES
    return (TABLE_DTYPES.index(dtype) if known else len(TABLE_DTYPES), dtype)


def _closest_entry(report: str) -> list[str]:
    """Of a jaxcheck report, the header of its table of entries and the entry
    closest to failing (or the worst one)."""
    lines = report.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip().startswith("entry") and "tolerance" in line:
            pair = lines[i : i + 2]
            indent = min(len(x) - len(x.lstrip()) for x in pair)
            return [x[indent:].rstrip() for x in pair]
    return []


def print_ladder(
    kind: str, what: str, rows: dict[str, Any], deltas: list[float]
) -> None:
    """Per dtype, the calls whose mutant each tool caught at each delta (and at
    every larger one), and the smallest delta it caught on every call."""
    floor = min(row["floor"] for row in rows.values())
    shown = [d for d in deltas if d >= floor]
    print(
        f"  {kind} mutants ({what}): calls caught at each delta and every larger"
        f" one, JAX/jaxcheck; the smallest delta caught on every call"
    )
    head = "".join(f"{_delta(d):>10s}" for d in shown)
    print(f"    {'dtype':14s}{'calls':>6s}{head}{'every call':>16s}")
    for dtype in sorted(rows, key=_dtype_order):
        row = rows[dtype]
        cells = "".join(
            f"{row['jax']['caught_at'][str(d)]:>6d}/{row['jaxcheck']['caught_at'][str(d)]:<3d}"
            for d in shown
        )
        every = "/".join(
            _delta(row[t]["reliable"]) if row[t]["reliable"] else "none"
            for t in ("jax", "jaxcheck")
        )
        print(f"    {dtype:14s}{row['calls']:6d}{cells}{every:>16s}")


def print_mutation(m: dict[str, Any]) -> None:
    print(
        f"\nMutation arm: {m['sampled']} calls sampled (of {m['eligible']} eligible),"
        f" {m['mutated']} mutated, {m['recorded'] - m['mutated']} skipped,"
        f" {len(m['not_reached'])} not reached; {m['wall']:.0f} s wall"
    )
    if m["args_mismatch"]:
        print(
            f"  WARNING: {len(m['args_mismatch'])} sampled calls had other arguments"
            f" than in the reference arm, e.g. {m['args_mismatch'][0]}"
        )
    for reason, count in sorted(m["skipped"].items(), key=lambda kv: -kv[1]):
        print(f"  skipped {count:3d}: {reason}")
    print(
        "  calls mutated per dtype and order: "
        + ", ".join(f"{k} {v}" for k, v in sorted(m["strata"].items()))
    )
    statuses = m["statuses"]
    print(
        f"  mutants run: {sum(m['run'].values())}; not run: {statuses.get('noop', 0)}"
        f" planting nothing (delta below the dtype's resolution, zero derivative,"
        f" equal entries), {statuses.get('n/a', 0)} not applicable,"
        f" {statuses.get('error', 0)} not buildable; {m['both_error']} where both"
        f" tools raised errors (excluded)"
    )
    print("  the mutation arm's catches per tool:")
    print(f"    {'kind':8s} {'mutants':>8s} {'JAX':>6s} {'jaxcheck':>9s}")
    for kind in (*MUTANT_KINDS, "all"):
        if kind == "all":
            run = sum(m["run"].values())
            jx, jc = (sum(m["caught"][t].values()) for t in ("jax", "jaxcheck"))
        else:
            run = m["run"].get(kind, 0)
            jx, jc = (m["caught"][t].get(kind, 0) for t in ("jax", "jaxcheck"))
        print(f"    {kind:8s} {run:8d} {jx:6d} {jc:9d}")
    for tool in ("jax", "jaxcheck"):
        if any(m["errors"][tool].values()):
            print(f"  errors (no verdict) of {tool}: {m['errors'][tool]}")
    extra = sum(m["extra_catches"].values())
    print(f"  caught by jaxcheck, missed by JAX: {extra} {m['extra_catches'] or ''}")
    print(f"  caught by JAX, missed by jaxcheck: {len(m['misses'])}")
    for miss in m["misses"]:
        delta = "" if miss["delta"] is None else f" delta {miss['delta']:.0e}"
        print(
            f"    {miss['nodeid']}#{miss['index']} {miss['function']}: {miss['dtype']}"
            f" order {miss['order']}, {miss['kind']}{delta} (planted"
            f" {miss['planted']:.2g}); atol {miss['atol']}, rtol {miss['rtol']},"
            f" eps {miss['eps']}"
        )
        for tool in ("jaxcheck", "jax"):
            said = miss[tool]
            lines = [x.strip() for x in said["message"].splitlines() if x.strip()]
            if tool == "jax":  # the compared values: the last lines
                lines = lines[1:2] + [x for x in lines if x.startswith(("ACT", "DES"))]
            what = said["outcome"] + (f": {' / '.join(lines)[:200]}" if lines else "")
            print(f"      {tool}: {what}")
            for line in _closest_entry(said.get("report", "")):
                print(f"        {line}")
    for kind, what in LADDER_KINDS.items():
        rows = m["ladders"].get(kind, {})
        if rows:
            print_ladder(kind, what, rows, m["deltas"])
    t = m["time"]
    print(
        f"  time in the mutants' checks: JAX {t['jax']:.0f} s, jaxcheck"
        f" {t['jaxcheck']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    if args.load:  # summarize the raw results of an earlier run again
        saved = json.loads(args.load.read_text())
        results = saved["arms"]
        args.test_file, args.keyword = saved["test_file"], saved["keyword"]
        args.x64 = saved.get("x64", False)
    elif not args.test_file or not args.test_file.is_file():
        what = f"no such test file: {args.test_file}" if args.test_file else None
        print(what or "a test file (or --load JSON) is needed", file=sys.stderr)
        return 2
    elif args.mutants and args.only == "jaxcheck":
        print("--mutants samples the calls of the jax arm", file=sys.stderr)
        return 2
    else:
        with tempfile.TemporaryDirectory(prefix="jax_conformance_") as tmp:
            runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for k in range(max(args.repeat, 1)):
                workdir = Path(tmp) / f"run{k}"
                workdir.mkdir()
                for arm in (args.only,) if args.only else ARMS:
                    runs[arm].append(run_arm(arm, args, workdir))
            results = {arm: fastest_calls(arm_runs) for arm, arm_runs in runs.items()}
            if args.mutants > 0:
                results[MUTANT_ARM] = run_mutation_arm(args, Path(tmp), results["jax"])
    arms = tuple(arm for arm in ARMS if arm in results)
    summaries = {arm: arm_summary(r) for arm, r in results.items()}

    selection = f"-k {args.keyword}" if args.keyword else "all"
    print(f"\n=== {args.test_file} ({selection}{', x64' if args.x64 else ''})")
    for arm in arms:
        print_arm(arm, summaries[arm], results[arm]["log_tail"])
    comparison = None
    if len(arms) == 2:
        comparison = compare(results["jax"], results["jaxcheck"])
        print_comparison(comparison, summaries)
    if "jaxcheck" in summaries:
        print_fallbacks(summaries["jaxcheck"])
    mutation = None
    if MUTANT_ARM in results:
        s = summaries[MUTANT_ARM]
        if s["timed_out"] or not s["finished"] or s["rc"] not in (0, 1):
            print_arm(MUTANT_ARM, s, results[MUTANT_ARM]["log_tail"])
        mutation = mutation_summary(results[MUTANT_ARM], results.get("jax"))
        print_mutation(mutation)

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "test_file": str(args.test_file),
                    "keyword": args.keyword,
                    "x64": args.x64,
                    "summaries": summaries,
                    "comparison": comparison,
                    "mutation": mutation,
                    "arms": results,
                },
                indent=1,
            )
        )
        print(f"\nRaw results written to {args.json}")

    ran = all(
        s["finished"] and not s["timed_out"] and s["rc"] in (0, 1)
        for s in summaries.values()
    )
    matched = comparison is None or comparison["count_match"]
    no_misses = mutation is None or not mutation["misses"]
    return 0 if ran and matched and no_misses else 1


if __name__ == "__main__":
    sys.exit(main())
