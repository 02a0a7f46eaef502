"""scripts/mutation_report.py over mutmut result files written here: classes, rates, failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "mutation_report.py"
# Listed as equivalent in tests/mutation-survivors.md: left out of the rate while it survives.
EQUIVALENT = "webhook.engine.grammar.x_parse_host_port__mutmut_8"


def report(root: Path, results: dict[str, dict[str, int | None]], *args: str) -> tuple[int, str, str]:
    for module, exit_codes in results.items():
        meta = root / (module + ".meta")
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": exit_codes}))
    done = subprocess.run([sys.executable, str(SCRIPT), *args, str(root)], capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def test_the_rate_leaves_out_listed_equivalents_and_counts_untested_mutants_as_survivors(tmp_path: Path) -> None:
    codes = {"g.x_f__mutmut_1": 1, "g.x_f__mutmut_2": 3, "g.x_f__mutmut_3": -24, "g.x_f__mutmut_4": 0, "g.x_f__mutmut_5": 33, EQUIVALENT: 0}
    status, out, err = report(tmp_path, {"webhook/engine/grammar.py": codes}, "--survivors")
    line = next(line for line in out.splitlines() if line.startswith("webhook/engine/grammar.py"))
    assert line.split() == ["webhook/engine/grammar.py", "6", "2", "1", "1", "2", "0", "60.0%"]
    assert "g.x_f__mutmut_4\n" in out + "\n" and "g.x_f__mutmut_5  (no selected test reaches it)" in out
    assert (status, err) == (0, "")


def test_it_fails_under_the_rate_on_an_unjudged_mutant_and_on_a_killed_equivalent(tmp_path: Path) -> None:
    status, _, err = report(tmp_path, {"webhook/engine/grammar.py": {"g.a": 1, "g.b": 0, "g.c": None, EQUIVALENT: 1}}, "--fail-under", "90")
    assert status == 1
    assert "1 mutants were not judged by a test" in err and f"killed: {EQUIVALENT}" in err
    assert "kill rate under 90% in: webhook/engine/grammar.py" in err


def test_a_module_that_was_not_run_is_shown_and_not_counted(tmp_path: Path) -> None:
    results = {"webhook/engine/grammar.py": {"g.a": 1}, "webhook/engine/patch.py": {"p.a": None, "p.b": None}}
    status, out, err = report(tmp_path, results, "--fail-under", "90")
    assert (status, err) == (0, "")
    assert "webhook/engine/patch.py" in out and "not run" in out and "1 of 2 modules not run" in out
    assert next(line for line in out.splitlines() if line.startswith("all")).split()[1:] == ["1", "1", "0", "0", "0", "0", "100.0%"]


def test_no_results_is_an_error_saying_what_to_run(tmp_path: Path) -> None:
    status, _, err = report(tmp_path, {})
    assert status == 1 and "run `make mutate` first" in err
