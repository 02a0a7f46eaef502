"""The benchmark's own pieces: payloads are reviews the webhook accepts, the micro-benchmark runs."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import cast

import orjson
import pytest

from bench import micro, payloads, verify
from tests.webhook_process import running
from webhook.admission.decide import admit
from webhook.admission.review import decode
from webhook.engine.settings import load_settings


def test_payloads_are_admission_reviews_of_the_advertised_sizes() -> None:
    bodies = payloads.bodies()
    assert set(bodies) == set(payloads.CASES)
    assert 4_000 < len(bodies["small"]) < 7_000
    assert 90_000 < len(bodies["large"]) < 120_000
    large = orjson.loads(bodies["large"])["request"]["object"]["spec"]
    assert sum(len(c["env"]) for c in large["containers"]) == 1_200
    assert len(large["volumes"]) == 20
    for body in bodies.values():
        decode(body)  # raises ReviewError if the shape is wrong


def test_annotated_payloads_are_injected_and_the_unannotated_one_is_not() -> None:
    settings = load_settings(None, environ={})
    reviews = payloads.reviews()
    for case, review in reviews.items():
        answer = orjson.dumps(admit(decode(orjson.dumps(review)), settings).review)
        verify.check_answer(case, review, 200, answer, annotated=case != "unannotated")


def test_the_verifier_rejects_a_patch_that_does_not_inject() -> None:
    review = payloads.small_review()
    empty = base64.b64encode(orjson.dumps([])).decode()
    answer = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True, "patchType": "JSONPatch", "patch": empty},
    }
    with pytest.raises(verify.VerificationError, match="no entourage-ambassador-\\* container"):
        verify.check_answer("small", review, 200, orjson.dumps(answer), annotated=True)


def test_the_micro_benchmark_runs_a_few_iterations() -> None:
    results = micro.run(seconds=0.001, repeat=1)
    assert set(results) == set(payloads.CASES)
    for timings in results.values():
        assert set(timings) == {"full decode", "decode", "inject", "encode", "total"}
        assert all(value > 0 for value in timings.values())


def test_the_varied_case_sends_many_different_pods_each_injected() -> None:
    settings = load_settings(None, environ={})
    varied = payloads.varied_reviews()
    assert len(varied) >= 12
    asked = {tuple(sorted(k for k in r["request"]["object"]["metadata"]["annotations"] if k.startswith("entourage.dev/"))) for r in varied}
    assert len(asked) >= 8, "the varied pods should ask for different things"
    for index, review in enumerate(varied):
        assert review["request"]["object"]["metadata"]["generateName"] == payloads.VARIED_NAME
        answer = orjson.dumps(admit(decode(orjson.dumps(review)), settings).review)
        verify.check_answer(f"varied[{index}]", review, 200, answer, annotated=True, containers_asked=False)


def test_a_race_of_a_tree_against_itself_comes_out_even() -> None:
    """bench.race runs both servers at once on one core: the same code gets the same share
    (within noise: a tenth of a second of requests each)."""
    from bench import race
    from bench.runner import REPO

    ratios = race.race(REPO, ["unannotated"], seconds=1, rounds=1, connections=4)
    assert list(ratios) == ["unannotated"] and len(ratios["unannotated"]) == 1
    assert 0.5 < ratios["unannotated"][0] < 2.0


@pytest.mark.parametrize(("vary", "reused"), [("", True), (payloads.VARIED_NAME, False)])
def test_wrk_sends_the_varied_pods_in_turn_with_or_without_a_counter(tmp_path: Path, vary: str, reused: bool) -> None:
    """post.lua cycles a .jsonl file's bodies: with the counter (``varied``) no answer is reused;
    without it (``varied-reused``) every pod after the first round is answered from the cache."""
    from bench.runner import LUA

    files = payloads.write(tmp_path / "bodies")
    with running(tmp_path) as webhook:
        command = ["wrk", "-t1", "-c2", "-d1s", "-s", str(LUA), f"https://127.0.0.1:{webhook.port}/mutate"]
        output = subprocess.run(
            command, env={**os.environ, "BENCH_BODY": str(files["varied"]), "BENCH_VARY": vary}, capture_output=True, check=True, text=True
        ).stdout
        measured = orjson.loads(next(line for line in output.splitlines() if line.startswith("BENCH_JSON ")).removeprefix("BENCH_JSON "))
        metrics = webhook.metrics()
    assert not sum(measured["errors"].values())
    sent = measured["requests"]
    injected = sum(value for name, value in metrics.items() if name.startswith('entourage_admissions_total{outcome="injected"'))
    assert sent > 100 and injected >= sent
    kinds = {name.split('kind="')[1].split('"')[0] for name in metrics if name.startswith("entourage_injected_components_total{")}
    assert kinds == {"waitFor", "ambassador", "logging", "adapter"}, "every varied pod is sent"
    answered_again = metrics.get("entourage_answers_reused_total", 0)
    if reused:
        assert answered_again >= injected - 2 * len(payloads.varied_reviews())
    else:
        assert answered_again == 0


def test_flat_memory_compares_the_last_run_with_the_warm_ups() -> None:
    """A transient peak at 200k (the large pod at 16 connections) is not growth; a rise that is
    still there after the last run is."""
    from bench.runner import Server, _memory

    def server(samples: list[tuple[int, float]]) -> Server:
        no_process = cast("subprocess.Popen[bytes]", None)  # _memory reads only the samples
        return Server("entourage", 0, no_process, served=samples[-1][0], rss=samples)

    peak = _memory(server([(63_220, 79.0), (216_114, 87.0), (1_064_690, 74.9)]), 63_220)
    assert peak["rss_200k_mib"] == 87.0 and peak["rss_growth"] == pytest.approx(-0.052, abs=1e-3)
    grown = _memory(server([(63_220, 79.0), (216_114, 80.0), (1_064_690, 88.0)]), 63_220)
    assert grown["rss_growth"] == pytest.approx(0.114, abs=1e-3)
    short = _memory(server([(63_220, 79.0), (150_000, 79.5)]), 63_220)
    assert short["rss_growth"] is None, "not judged before 200k requests"
