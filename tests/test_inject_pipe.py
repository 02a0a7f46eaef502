"""`entourage inject` in a pipe: the whole stream on stdout or nothing, every problem on stderr.

Golden cases in ``tests/testdata/pipe/<case>.yaml``; each ``<case>.yaml.result`` holds the exit
code, stderr and stdout of ``entourage inject -f <case>.yaml`` (``REFRESH_GOLDEN=1`` rewrites them).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from webhook import yamlio
from webhook.cli import main
from webhook.engine.inject import inject_pod
from webhook.engine.settings import Settings

CASES_DIR = Path(__file__).parent / "testdata" / "pipe"
CASES = sorted(CASES_DIR.glob("*.yaml"))
REFRESH = os.environ.get("REFRESH_GOLDEN") == "1"
ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(argv, stdin=io.StringIO(stdin), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def result_text(code: int, stdout: str, stderr: str) -> str:
    return f"exit {code}\n== stderr\n{stderr}== stdout\n{stdout}"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_each_case_gives_its_golden_exit_code_stderr_and_stdout(case: Path) -> None:
    code, stdout, stderr = run(["inject", "-f", str(case)])
    golden = case.with_name(case.name + ".result")
    if REFRESH:
        golden.write_text(result_text(code, stdout, stderr))
    assert golden.exists(), f"{golden.name} is missing: run with REFRESH_GOLDEN=1"
    assert result_text(code, stdout, stderr) == golden.read_text(), f"{golden.name} is stale: REFRESH_GOLDEN=1 and review the diff"


def test_every_pipe_golden_file_has_its_case() -> None:
    for path in CASES_DIR.glob("*.result"):
        assert path.with_suffix("").exists(), f"{path.name} has no input case: delete it"


@pytest.mark.parametrize(
    "case", [CASES_DIR / "passthrough-byte-for-byte.yaml", CASES_DIR / "other-kinds-with-templates.yaml"], ids=lambda p: p.stem
)
def test_documents_that_nothing_was_injected_into_come_out_byte_for_byte(case: Path, settings: Settings) -> None:
    text = case.read_text()
    code, stdout, _ = run(["inject", "-f", str(case)])
    assert code == 0
    documents = yamlio.load_all(text)
    pieces = yamlio.document_texts(text, documents)
    assert pieces is not None
    out_documents = yamlio.load_all(stdout)
    assert len(out_documents) == len(documents)
    untouched = [piece for piece, before, after in zip(pieces, documents, out_documents, strict=True) if before == after]
    assert untouched, "each case passes something through"
    for piece in untouched:
        assert piece.removeprefix("---\n") in stdout
    changed = [piece for piece, before, after in zip(pieces, documents, out_documents, strict=True) if before != after]
    for piece in changed:
        comments = yamlio.leading_comments(piece)
        assert comments and comments in stdout, "an injected document keeps the comment lines it began with"


def test_a_failure_anywhere_writes_nothing_and_names_every_document_and_key() -> None:
    code, stdout, stderr = run(["inject", "-f", str(CASES_DIR / "failures-name-every-document.yaml")])
    assert code == 1 and stdout == ""
    assert "document 1 (Deployment typo spec.template): entourage.dev/loging: 'true': unknown annotation" in stderr
    assert "document 1 (Deployment typo spec.template): entourage.dev/wait-for: 'db;reboot'" in stderr
    assert "document 2 (item 1 (CronJob nightly) spec.jobTemplate.spec.template): entourage.dev/adapter:" in stderr
    assert "document 3 (Rollout canary spec.template): entourage.dev/ambassador: '70000=redis:6379'" in stderr
    assert "document 0" not in stderr


def test_list_items_and_other_kinds_with_pod_templates_are_injected_like_the_webhook_would(settings: Settings) -> None:
    code, stdout, _ = run(["inject", "-f", str(CASES_DIR / "list-items.yaml")])
    assert code == 0
    [listed] = yamlio.load_all(stdout)
    before = yamlio.load_all((CASES_DIR / "list-items.yaml").read_text())[0]
    assert listed["items"][0]["spec"]["template"] == inject_pod(before["items"][0]["spec"]["template"], settings).pod
    assert listed["items"][1] == before["items"][1]
    assert listed["items"][2] == inject_pod(before["items"][2], settings).pod
    code, stdout, _ = run(["inject", "-f", str(CASES_DIR / "other-kinds-with-templates.yaml")])
    rollout, cloneset, report = yamlio.load_all(stdout)
    assert [c["name"] for c in rollout["spec"]["template"]["spec"]["containers"]] == ["checkout", "entourage-logging"]
    assert cloneset == yamlio.load_all((CASES_DIR / "other-kinds-with-templates.yaml").read_text())[1]
    assert "entourage.dev/status" not in str(report)


def test_a_real_pipe_receives_nothing_when_one_document_fails(tmp_path: Path) -> None:
    """`entourage inject -f x.yaml | consumer`: the consumer reads an empty stream, the pipeline fails."""
    received = tmp_path / "received.yaml"
    script = f"set -o pipefail; {sys.executable} -m webhook inject -f - | cat > {received}"
    manifest = (CASES_DIR / "failures-name-every-document.yaml").read_text()
    result = subprocess.run(["bash", "-c", script], input=manifest, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert received.read_text() == ""
    assert "nothing was written to stdout" in result.stderr


@pytest.mark.parametrize(
    ("argv", "stdin", "expected"),
    [
        (["inject", "-f", "/nonexistent/x.yaml"], "", "cannot read /nonexistent/x.yaml"),
        (["inject", "-f", "-"], "a: [b", "not valid YAML"),
        (["inject", "-f", "-"], "a: &x 1\nb: *x\n", "YAML aliases (*x) are not accepted"),
    ],
    ids=["missing-file", "broken-yaml", "alias"],
)
def test_unreadable_input_exits_2_with_nothing_on_stdout(argv: list[str], stdin: str, expected: str) -> None:
    code, stdout, stderr = run(argv, stdin)
    assert (code, stdout) == (2, "") and expected in stderr


def test_a_stream_that_cannot_be_cut_at_its_markers_is_dumped_whole() -> None:
    """A %YAML directive sits between documents: the text is not split, every document re-dumped."""
    text = "kind: ConfigMap\nmetadata: {name: a}\n...\n%YAML 1.1\n---\nkind: ConfigMap\nmetadata: {name: b}\n"
    code, stdout, _ = run(["inject", "-f", "-"], text)
    assert code == 0 and yaml.safe_load_all(stdout) is not None
    assert [d["metadata"]["name"] for d in yamlio.load_all(stdout)] == ["a", "b"]
