"""Short versions of ``make soak`` (``python -m soak``): a mixed soak over TLS with every answer
checked, one fault under load, and the fuzzers on the request path."""

from __future__ import annotations

import base64
import json
from collections import Counter

import orjson
import pytest

from soak import corpus, faults, fuzz, mix, runs
from webhook.admission.decide import admit
from webhook.engine.settings import load_settings


def test_the_soak_mix_covers_every_pattern_denials_skips_and_each_case_is_judged_by_hand_and_by_the_engine() -> None:
    cases = mix.prepare(mix.cases(), load_settings(None, environ={}))  # raises if the engine disagrees with a hand-written expectation
    expectations = Counter(case.expect for case in cases)
    assert expectations["inject"] >= 8 and expectations["deny"] >= 4 and expectations["allow"] >= 4
    injected = {name for case in cases for name in case.containers}
    assert {"entourage-logging", "entourage-ambassador-6379", "entourage-adapter-nginx-prometheus", "entourage-wait-db-5432"} <= injected
    assert {"not-a-pod", "update", "invalid-typo", "hostile-shell"} <= {case.name for case in cases}


def test_a_five_second_mixed_soak_over_tls_answers_every_request_correctly_and_keeps_fds_flat() -> None:
    result = runs.soak(duration=5, concurrency=4, warmup=1.5, validate_every=100)
    assert result.problems(rss_growth_mib=32) == [], result.report()
    assert result.stats.answered > 500 and result.stats.validated >= 1
    assert set(result.stats.cases) == {case.name for case in mix.cases()}, "every case of the mix was sent"


@pytest.mark.slow
def test_the_configuration_replaced_by_a_broken_file_then_a_good_one_under_load_fails_no_request() -> None:
    result = faults.config(seconds=4)
    assert result.problems == [], result.report()


def test_every_seed_of_the_committed_fuzz_corpus_gets_a_4xx_or_a_correct_answer_in_process() -> None:
    seeds = corpus.load()
    assert len(seeds) >= 40
    assert set(seeds) == set(corpus.seeds()), "tests/fuzz_corpus/ is stale: run `python -m soak corpus`"
    stats = fuzz.FuzzStats()
    app = fuzz.App()
    try:
        fuzz.run_inputs(app, fuzz.seed_inputs(), stats, "corpus")
    finally:
        app.close()
    assert stats.failures == [], stats.failures[:5]
    assert stats.status[200] >= 5 and stats.status[400] >= 10


def test_two_thousand_fuzz_inputs_never_get_a_5xx_or_an_escaping_exception() -> None:
    stats = fuzz.fuzz_in_process(hypothesis_examples=300, mutation_inputs=1_700, seed=7)
    assert stats.inputs >= 2_000
    assert stats.failures == [], stats.summary() + "\n" + "\n".join(stats.failures[:5])


def test_a_pod_whose_owner_references_are_not_a_list_is_answered_not_a_500() -> None:
    """Found by the soak fuzzer: ``_controller`` iterates ``ownerReferences`` of any type."""
    review = mix.reference_review()
    review["request"]["object"]["metadata"]["ownerReferences"] = True
    body = orjson.dumps(review)
    app = fuzz.App()
    try:
        sent, error = app.call(fuzz.Input(body))
    finally:
        app.close()
    assert error is None and fuzz.verdict(fuzz.Input(body), sent, error) == (200, "")


def test_the_verdict_catches_a_5xx_a_wrong_uid_and_a_patch_that_does_not_apply() -> None:
    body = orjson.dumps(mix.reference_review())
    item = fuzz.Input(body)
    start = {"type": "http.response.start", "status": 200, "headers": []}
    assert "HTTP 500" in fuzz.verdict(item, [{**start, "status": 500}, {"type": "http.response.body", "body": b"oops"}], None)[1]
    wrong_uid = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "other", "allowed": True}}
    assert "not an answer" in fuzz.verdict(item, [start, {"type": "http.response.body", "body": orjson.dumps(wrong_uid)}], None)[1]
    bad_patch = base64.b64encode(json.dumps([{"op": "replace", "path": "/nope/0", "value": 1}]).encode()).decode()
    answer = admit(mix.reference_review(), load_settings(None, environ={})).review
    answer["response"].update(patch=bad_patch, patchType="JSONPatch")
    assert "does not apply" in fuzz.verdict(item, [start, {"type": "http.response.body", "body": orjson.dumps(answer)}], None)[1]


def test_a_short_memory_flood_answers_every_distinct_adversarial_request_and_checks_each_events_owner() -> None:
    """``python -m soak --only memory`` in small: the mix itself (every kind answered as it
    should be, Events written only for the owner the fake API has). The RSS bounds need the full
    run's full caches; here the figures are only printed."""
    from soak import memory

    result = memory.memory(requests=1_600, warmup_seconds=2.0, concurrency=2, max_seconds=60.0)
    print(result.report())
    assert result.flood.problems == [] and result.warmup.problems == []
    assert result.flood.answered == 1_600 and not result.flood.cut_short
    assert {outcome.split("/")[0] for outcome in result.flood.outcomes} == set(memory._KINDS)
    assert result.flood.outcomes["deny/denied"] == 200
    events = {key.split('"')[1]: value for key, value in result.metrics.items() if key.startswith("entourage_events_total{")}
    assert events.get("sent", 0) >= 1 and events.get("unverified", 0) >= 1


def test_the_adversarial_growth_check_needs_both_the_raw_and_the_json_loads_relative_growth() -> None:
    """A json.loads reference that measured low on a busy host is not growth (soak/adversarial.py)."""
    from soak.adversarial import MAX_GROWTH, Cost, _growth

    small = Cost("deep-wide", 1_500_000, cpu=0.0268, baseline=0.741, reference=0.02, status="allowed")
    noisy_reference = Cost("deep-wide", 3_150_000, cpu=0.0591, baseline=1.1715, reference=0.04, status="allowed")
    assert noisy_reference.ratio / small.ratio > MAX_GROWTH and _growth(small, noisy_reference) < 1.1
    quadratic = Cost("deep-wide", 3_150_000, cpu=0.0268 * 2.1**2, baseline=0.741 * 2.1, reference=0.04, status="allowed")
    assert _growth(small, quadratic) > MAX_GROWTH
    follows_json_loads = Cost("deep-wide", 3_150_000, cpu=0.0268 * 2.1 * 1.4, baseline=0.741 * 2.1 * 1.4, reference=0.04, status="allowed")
    assert _growth(small, follows_json_loads) < 1.05
