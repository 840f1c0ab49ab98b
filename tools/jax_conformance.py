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

It prints, per arm, the tests passed/failed/skipped and the `check_grads` calls
made; whether the jaxcheck arm made as many calls as the reference arm; the tests
that pass with JAX's `check_grads` but fail with jaxcheck's, grouped by the first
line of the error (numbers blanked to `#`, dict contents to `{…}`); the time per
call of the calls that passed in both arms (matched by test id and call index);
and how many jaxcheck calls fell back to evaluating one at a time or to fast mode.

By default a failing `check_grads` call does not stop its test: it is recorded,
the test runs to its end, and then fails with the first such error. So every
call is made in both arms, and the call counts compare routing, not failures.
`--stop-at-first` raises at once instead, as a plain drop-in does.

Exit status: 0 when the arms ran and (with both arms) made the same number of
calls; 1 when an arm could not run to its end or the call counts differ.
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
        "--pytest-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for pytest (repeatable)",
    )
    return parser.parse_args(argv)


def pytest_command(args: argparse.Namespace, ini: Path) -> list[str]:
    """The pytest command of one arm: the test file alone, with an empty ini file
    so that no project's pytest settings apply, and the plugin loaded early."""
    test_file = args.test_file.resolve()
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(test_file),
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
    if args.keyword:
        command += ["-k", args.keyword]
    return command + args.pytest_arg


def run_arm(arm: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Runs pytest with `arm`'s check_grads and reads back the plugin's records."""
    records, log = workdir / f"{arm}.jsonl", workdir / f"{arm}.log"
    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\n")
    env = dict(os.environ)
    env.update(
        JAX_CONFORMANCE_ARM=arm,
        JAX_CONFORMANCE_OUT=str(records),
        JAX_CONFORMANCE_DEFER="0" if args.stop_at_first else "1",
        PYTHONDONTWRITEBYTECODE="1",  # leave the test file's folder as it is
    )
    path = [str(TOOLS_DIR)]
    if args.jaxcheck_path and arm == "jaxcheck":
        path.append(str(args.jaxcheck_path.resolve()))
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    command = pytest_command(args, ini)
    print(f"[{arm}] {' '.join(command)}", flush=True)
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
    result["log_tail"] = log.read_text(errors="replace").splitlines()[-40:]
    state = "timed out" if timed_out else f"exit code {rc}"
    print(f"[{arm}] {state} after {wall:.0f} s", flush=True)
    return result


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
    print(f"\nTime per call, {t['matched_calls']} calls that passed in both arms:")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    if args.load:  # summarize the raw results of an earlier run again
        saved = json.loads(args.load.read_text())
        results = saved["arms"]
        args.test_file, args.keyword = saved["test_file"], saved["keyword"]
    elif not args.test_file or not args.test_file.is_file():
        what = f"no such test file: {args.test_file}" if args.test_file else None
        print(what or "a test file (or --load JSON) is needed", file=sys.stderr)
        return 2
    else:
        with tempfile.TemporaryDirectory(prefix="jax_conformance_") as tmp:
            for arm in (args.only,) if args.only else ARMS:
                results[arm] = run_arm(arm, args, Path(tmp))
    arms = tuple(arm for arm in ARMS if arm in results)
    summaries = {arm: arm_summary(r) for arm, r in results.items()}

    print(f"\n=== {args.test_file} ({'-k ' + args.keyword if args.keyword else 'all'})")
    for arm in arms:
        print_arm(arm, summaries[arm], results[arm]["log_tail"])
    comparison = None
    if len(arms) == 2:
        comparison = compare(results["jax"], results["jaxcheck"])
        print_comparison(comparison, summaries)
    if "jaxcheck" in summaries:
        print_fallbacks(summaries["jaxcheck"])

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "test_file": str(args.test_file),
                    "keyword": args.keyword,
                    "summaries": summaries,
                    "comparison": comparison,
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
    return 0 if ran and (comparison is None or comparison["count_match"]) else 1


if __name__ == "__main__":
    sys.exit(main())
