"""The kill rate per module of the last `make mutate` run, read from mutmut's results in mutants/.

mutmut keeps one ``<module>.py.meta`` file per mutated module, mapping every mutant to the exit
code of its test run. This reads them and prints, per module, how many mutants the fast test
selection killed and how many survived. The classes are ours, not mutmut's summary, on purpose:

- killed: a test failed (exit 1, or 3 for an error inside pytest);
- timeout: the mutant made a test run past its time (SIGXCPU): an endless loop is a change the
  tests noticed, so it counts as killed, as mutmut counts it;
- equivalent: it survived and tests/mutation-survivors.md explains why no test can kill it (the
  mutant behaves as the original, or exists only while the module is imported); left out of the
  rate, and a listed mutant that was killed is reported, so the list cannot go stale unnoticed;
- survived: every test passed (exit 0), or no selected test reaches the mutated function
  (exit 33 or 5): an untested mutant is not a killed one;
- error: anything else (mutmut reports a crash of its own test harness, exit 255, as a timeout;
  here it is an error, because no test judged the mutant), or not run yet in a module that was.

A module none of whose mutants has run (``make mutate MUTANTS='webhook.engine.grammar.*'`` runs
one module) is shown as "not run" and neither counted nor failed.

Kill rate = (killed + timeout) / (killed + timeout + survived). Exit 1 when a mutant was not
judged, a listed equivalent mutant was killed, or (``--fail-under``) a module's rate is too low.

Usage: ``python scripts/mutation_report.py [--survivors] [--fail-under PERCENT] [MUTANTS_DIR]``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3}
TIMEOUT = {-24, 24, 36, 152}
SURVIVED = {0, 5, 33}
EQUIVALENTS = Path(__file__).resolve().parent.parent / "tests" / "mutation-survivors.md"
LISTED = re.compile(r"^- `(?P<name>webhook\.[^`]+)`", re.MULTILINE)


def classify(exit_code: int | None, equivalent: bool) -> str:
    """Our class of one mutant's exit code (see the module docstring)."""
    if exit_code in KILLED:
        return "killed"
    if exit_code in TIMEOUT:
        return "timeout"
    if exit_code in SURVIVED:
        return "equivalent" if equivalent else "survived"
    return "error"


def read_results(root: Path) -> dict[str, dict[str, int | None]]:
    """Module path → {mutant name: exit code}, for every module that has mutants."""
    results = {}
    for meta in sorted(root.rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        if exit_codes:
            results[str(meta.relative_to(root).with_suffix(""))] = exit_codes
    return results


def read_equivalents(path: Path) -> set[str]:
    """The mutant names tests/mutation-survivors.md lists (``- `name` — why``)."""
    return set(LISTED.findall(path.read_text())) if path.exists() else set()


def rate(counts: Counter[str]) -> float | None:
    """Killed (with timeouts) over killed and survived, in percent; None when none was judged."""
    killed = counts["killed"] + counts["timeout"]
    judged = killed + counts["survived"]
    return 100.0 * killed / judged if judged else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mutants", nargs="?", type=Path, default=Path("mutants"), help="mutmut's work directory (default: mutants)")
    parser.add_argument("--survivors", action="store_true", help="list every surviving mutant (see one with `mutmut show NAME`)")
    parser.add_argument("--fail-under", type=float, metavar="PERCENT", help="exit 1 when a module's kill rate is below this")
    args = parser.parse_args(argv)
    results = read_results(args.mutants)
    if not results:
        print(f"no mutmut results under {args.mutants}/: run `make mutate` first", file=sys.stderr)
        return 1
    equivalents = read_equivalents(EQUIVALENTS)
    width = max(len(module) for module in results)
    print(f"{'module':<{width}}  mutants  killed  timeout  equivalent  survived  error  kill rate")
    total: Counter[str] = Counter()
    below, survivors, stale, not_run = [], [], [], []
    for module, exit_codes in results.items():
        if all(code is None for code in exit_codes.values()):
            not_run.append(module)
            print(f"{module:<{width}}  {len(exit_codes):>7}  not run")
            continue
        counts = Counter(classify(code, name in equivalents) for name, code in exit_codes.items())
        total.update(counts)
        survivors += [(name, code) for name, code in sorted(exit_codes.items()) if classify(code, name in equivalents) == "survived"]
        stale += [name for name, code in exit_codes.items() if name in equivalents and code in KILLED | TIMEOUT]
        module_rate = rate(counts)
        if args.fail_under is not None and module_rate is not None and module_rate < args.fail_under:
            below.append(module)
        print(row(module, width, len(exit_codes), counts))
    print(row("all", width, sum(total.values()), total))
    if not_run:
        print(f"\n{len(not_run)} of {len(results)} modules not run: their mutants are not counted above")
    if args.survivors:
        print("\nsurvivors:")
        for name, code in survivors:
            print(f"  {name}{'  (no selected test reaches it)' if code != 0 else ''}")
    problems = []
    if total["error"]:
        problems.append(f"{total['error']} mutants were not judged by a test (harness error, or not run yet)")
    if stale:
        problems.append(f"listed as equivalent in {EQUIVALENTS.name} but killed: {', '.join(sorted(stale))}")
    if below:
        problems.append(f"kill rate under {args.fail_under:g}% in: {', '.join(below)} (see --survivors)")
    for problem in problems:
        print(f"\n{problem}", file=sys.stderr)
    return 1 if problems else 0


def row(module: str, width: int, mutants: int, counts: Counter[str]) -> str:
    module_rate = rate(counts)
    shown = "-" if module_rate is None else f"{module_rate:.1f}%"
    return (
        f"{module:<{width}}  {mutants:>7}  {counts['killed']:>6}  {counts['timeout']:>7}  {counts['equivalent']:>10}"
        f"  {counts['survived']:>8}  {counts['error']:>5}  {shown:>9}"
    )


if __name__ == "__main__":
    sys.exit(main())
