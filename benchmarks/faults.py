#!/usr/bin/env python3
"""Faults with nothing lost (issue 13, item 5): the namespace fault scenario of `tests/faults.py`, repeated, with
a short and a 60 s partition; figures into docs/benchmarks.md.

    python benchmarks/faults.py [--runs 4] [--long-runs 2] [--write docs/benchmarks.md] [--json FILE] [--rev REV]

Each run builds a fresh lab (4 network namespaces on one bridge, real mDNS), starts 4 peers with the mflux
stand-in and sends a burst of 60 image requests from 6 clients; during it n3 is killed with SIGKILL, n2's link
goes down for 4 s, and n1 is cut off from the others (5 s, or 60 s in the long runs), then healed; n3 is
restarted on its data dir at the end. Per run: requests lost (no PNG and no JSON error before the 45 s
deadline), errors by kind, requests run twice with no fault to excuse it, re-runs a fault made necessary,
the worst answer time (all, and where the entry peer stayed reachable), the time until every peer lists the
others up again (after link up, heal and restart), and n3's SQLite records across the kill.

Needs root (or passwordless sudo) for the lab, as `tests/test_faults.py` does. The test asserts the promises
on one run of each; this script measures how they hold over several.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import command_line, fmt, log, machine, table, today, write_section  # noqa: E402

from tests import faults, netns  # noqa: E402
from tests.harness import Mesh  # noqa: E402

SECTION = "faults"
PLANS = {"short": faults.SHORT, "long": faults.LONG}


def one_run(label: str, plan: faults.Plan, k: int, keep: bool = False) -> dict[str, Any] | None:
    """One run's figures, or None when the scenario itself broke down (the peers' logs are then printed)."""
    base = Path(tempfile.mkdtemp(prefix=f"herd-faults-{label}-"))
    mesh = Mesh(base)
    try:
        with netns.Lab(len(faults.NAMES)) as lab:
            try:
                report = faults.run(mesh, lab, plan, log=lambda m: log(f"  {m}"))
            finally:
                mesh.close()
    except Exception as exc:
        log(f"run failed: {exc}\npeers' logs and data kept in {base}:\n{mesh.logs()}")
        return None
    if keep:
        log(f"  peers' logs and data kept in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return result_of(label, k, report)


def result_of(label: str, k: int, report: faults.Report) -> dict[str, Any]:
    """A run's figures, with everything it saw (what `--json` writes and `--from-json` reads back)."""
    errors = [o for o in report.outcomes if o.kind != "ok"]
    twice = report.ran_twice()
    broken = report.lost() + report.late() + [o for o, _ in twice]
    return {
        "label": label,
        "run": k,
        "plan": asdict(report.plan),
        "summary": report.summary(),
        "error_messages": sorted({f"{o.kind}: {o.error[:200]}" for o in errors}),
        "problems": report.describe(broken) if broken else "",
        "outcomes": [asdict(o) for o in report.outcomes],
        "runs": [asdict(r) for r in report.runs],
        "faults": {k: sorted(v) if isinstance(v, set) else v for k, v in asdict(report.faults).items()},
        "wall_s": report.wall_s,
    }


def report_of(result: dict[str, Any]) -> faults.Report:
    """The `faults.Report` a `result_of` came from, so that saved runs are judged by the current rules."""
    outcomes = []
    for o in result["outcomes"]:
        o = dict(o)
        tries = [faults.Try(**t) for t in o.pop("tries")]
        outcomes.append(faults.Outcome(tries=tries, **o))
    fault_fields = dict(result["faults"])
    for name in ("records_before", "records_after", "records_restarted"):
        fault_fields[name] = set(fault_fields[name])
    plan = faults.Plan(**result["plan"]) if "plan" in result else PLANS[result["label"]]
    runs = [faults.Run(**r) for r in result["runs"]]
    wall_s = result.get("wall_s", result["summary"]["wall_s"])
    return faults.Report(plan, outcomes, faults.Faults(**fault_fields), runs, wall_s)


def _num(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    missing = len(values) - len(got)
    if not got:
        return "never"
    text = f"{fmt(statistics.median(got))} / {fmt(max(got))}"
    return text + (f" ({missing} never)" if missing else "")


def render(results: list[dict[str, Any]], plans: dict[str, faults.Plan], args: argparse.Namespace) -> str:
    lines = [
        f"`{command_line()}` — {today()}; machine: {machine()}.",
        "",
        "4 peers, each in its own network namespace on one Linux bridge, real mDNS; the mflux stand-in at "
        f"{faults.SHORT.job_s:g} s per 512x512 image ({faults.LONG.job_s:g} s in the 60 s runs, so that the burst "
        f"runs on through the partition); {faults.SHORT.requests} requests from {faults.SHORT.clients} clients "
        "(one after another each, request i to peer n(i mod 4) first; sent to the next peer only if the first "
        "never got it, or once more if the peer holding it died). During the burst: **kill -9** of n3 (the "
        f"namespace: peer and mflux), **n2's link down** {faults.SHORT.link_down_s:g} s, **n1 cut off** from the "
        "others, then healed; n3 restarted on its data dir at the end. Each fault starts once the burst has "
        "reached a number of answers, so it lands in the burst. Deadline per request: "
        f"{faults.SHORT.deadline_s:g} s.",
        "",
    ]
    rows = []
    for label, plan in plans.items():
        mine = [r["summary"] for r in results if r["label"] == label]
        if not mine:
            continue
        errors: Counter[str] = Counter()
        for s in mine:
            errors.update(s["errors"])
        rec = [s["reconverged_s"] for s in mine]
        intact = sum(1 for s in mine if s["records"]["survived"] and s["records"]["integrity"] == "ok")
        rows.append([
            f"{label} ({plan.partition_s:g} s partition)", len(mine), sum(s["requests"] for s in mine),
            sum(s["lost"] for s in mine),
            ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none", sum(s["stuck_in_cut"] for s in mine),
            sum(s["ran_twice_without_need"] for s in mine), sum(s["repeated_after_a_fault"] for s in mine),
            sum(s["resent_after_entry_died"] for s in mine),
            fmt(max(s["worst_reachable_answer_s"] for s in mine)), fmt(min(s["least_margin_s"] for s in mine)),
            fmt(max(s["worst_answer_s"] for s in mine)),
            _num([s["partition_noticed_s"] for s in mine]),
            _num([r.get("link up") for r in rec]), _num([r.get("heal") for r in rec]),
            _num([r.get("restart") for r in rec]),
            f"{intact} of {len(mine)}",
        ])  # fmt: skip
    lines.append(table(
        ["scenario", "runs", "requests", "lost", "errors by kind", "stuck in the cut", "ran twice without need",
         "re-run after a fault", "re-sent: entry died", "worst answer, entry reachable (s)",
         "least margin to its bound (s)", "worst answer (s)", "split noticed (s)",
         "reconverged after link up (s)", "after heal (s)", "after restart (s)", "records survived kill -9"],
        rows, align="lrrrlrrrrrrrrrrrr",
    ))  # fmt: skip
    lines += [
        "",
        "*Stuck in the cut*: answered from across the partition after the entry peer had listed that peer down "
        "(a forward it should have given up at once). *Split noticed*: median / max over runs of the time until "
        "the last peer listed the last one across the cut `down` (polled every 0.2 s). "
        "Reconvergence: median / max seconds from the fault's end until every live peer lists every other one "
        "`up`. *Worst answer, entry reachable*: from the moment the answering peer got the request, for "
        "requests whose entry peer the client could reach throughout (not the killed one, not n2 while "
        "unplugged). Its bound is the test's: the job, every other client's job queued ahead of it and "
        f"{faults.SHORT.few_s:g} s ({faults.SHORT.answer_bound_s:g} s; {faults.LONG.answer_bound_s:g} s with the "
        "longer jobs), plus the job and those seconds again for each run a fault made it repeat; the margin is "
        "how far below it the closest request stayed. *Re-run after a fault*: a second stand-in run of one "
        "request whose first run a fault cut off from the peer holding the request (needed: the answer could not "
        "come back).",
        "",
        "Per run:",
        "",
    ]
    per_run = []
    for r in results:
        s = r["summary"]
        rec = s["reconverged_s"]
        per_run.append([
            f"{r['label']} {r['run'] + 1}", s["ok"], s["lost"], ", ".join(f"{k}: {v}" for k, v in s["errors"].items())
            or "—", s["ran_twice_without_need"], s["repeated_after_a_fault"], s["resent_after_entry_died"],
            fmt(s["worst_reachable_answer_s"]), fmt(s["least_margin_s"]), fmt(s["worst_answer_s"]),
            " / ".join("never" if rec.get(k) is None else fmt(rec[k]) for k in ("link up", "heal", "restart")),
            "/".join(str(s["in_flight"].get(k, "-")) for k in ("kill", "unplug", "split")),
            f"{s['records']['before_kill']} -> {s['records']['after_kill']} -> {s['records']['after_restart']}",
            fmt(s["wall_s"], 0),
        ])  # fmt: skip
    lines.append(table(
        ["run", "ok", "lost", "errors", "twice w/o need", "re-run after fault", "re-sent", "worst reachable (s)",
         "margin (s)", "worst (s)", "reconverged link/heal/restart (s)", "in flight at kill/unplug/split",
         "n3 records before -> after kill -> restarted", "wall (s)"],
        per_run, align="lrrlrrrrrrlllr",
    ))  # fmt: skip
    messages = sorted({m for r in results for m in r["error_messages"]})
    if messages:
        lines += ["", "Error answers seen:", ""] + [f"- `{m}`" for m in messages]
    problems = [f"{r['label']} {r['run'] + 1}:\n{r['problems']}" for r in results if r["problems"]]
    if problems:
        lines += ["", "Requests that broke a promise (lost, late, or run twice without need):", "", "```text"]
        lines += problems + ["```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4, help="runs with the short (5 s) partition")
    parser.add_argument("--long-runs", type=int, default=2, help="runs with the 60 s partition")
    parser.add_argument("--write", type=Path, help="put the tables into this Markdown file (docs/benchmarks.md)")
    parser.add_argument("--json", type=Path, help="every request, stand-in run and fault time, for a closer look")
    parser.add_argument("--rev", help="run herd_mesh/ and tests/ as committed at this git revision (e.g. HEAD)")
    parser.add_argument("--from-json", type=Path, help="no runs: judge and render the runs saved by --json")
    parser.add_argument("--keep", action="store_true", help="keep each run's peer logs and data dirs")
    args = parser.parse_args()
    plans = PLANS
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        results = [result_of(r["label"], r["run"], report_of(r)) for r in saved]
        print(render(results, plans, args))
        return
    reason = netns.available()
    if reason:
        sys.exit(f"the namespace lab cannot run here: {reason}")
    schedule = [("short", k) for k in range(args.runs)] + [("long", k) for k in range(args.long_runs)]
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for label, k in schedule:
        plan = replace(plans[label])
        log(f"{label} run {k + 1}: partition {plan.partition_s:g} s")
        result = one_run(label, plan, k, args.keep)
        if result is None:
            failed.append(f"{label} {k + 1}")
            continue
        log(f"  {json.dumps(result['summary'])}")
        results.append(result)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    text = render(results, plans, args)
    if failed:
        text += f"\n\nRuns where the scenario itself broke down (see the log): {', '.join(failed)}."
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)


if __name__ == "__main__":
    main()
