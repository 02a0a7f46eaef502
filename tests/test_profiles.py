"""What every injected container shares (webhook/engine/profiles/common.py): names that never
collide, arguments rendered from placeholders, and containers built once per workload."""

from __future__ import annotations

import pytest

from tests.conftest import reference_pod
from webhook.engine import caches, patch
from webhook.engine.inject import inject_pod
from webhook.engine.profiles import common
from webhook.engine.profiles.common import NameAllocator, render_args, slug
from webhook.engine.settings import Settings


def test_a_taken_name_gets_the_next_free_counter() -> None:
    names = NameAllocator(["app", "entourage-logging", "entourage-logging-2"])
    assert [names.claim("entourage-logging") for _ in range(2)] == ["entourage-logging-3", "entourage-logging-4"]
    assert names.claim("Entourage Wait: db.prod:5432") == "entourage-wait-db-prod-5432"


def test_a_long_name_is_cut_to_63_characters_before_its_counter_without_a_dangling_dash() -> None:
    base = "a" * 60 + "-bc"  # 63 characters: the counter replaces its end
    names = NameAllocator([base])
    assert names.claim(base) == "a" * 60 + "-2"
    assert all(len(name) <= 63 for name in names.taken)


@pytest.mark.parametrize(
    ("text", "label"),
    [("db.prod:5432", "db-prod-5432"), ("--DB--", "db"), ("::1", "1"), ("", "x"), ("%%", "x"), ("a" * 62 + "-b", "a" * 62)],
)
def test_a_slug_is_a_dns_label(text: str, label: str) -> None:
    assert slug(text) == label


def test_an_argument_that_is_exactly_a_list_placeholder_becomes_one_argument_per_item() -> None:
    values = {"paths": ["/a", "/b"], "port": "80"}
    assert render_args(
        ["{paths}", "--port={port}", "{port}", "(paths)", "(paths}", "{missing-is-a-string}"], {**values, "missing-is-a-string": "s"}
    ) == [
        "/a",
        "/b",
        "--port=80",
        "80",
        "(paths)",
        "(paths}",
        "s",
    ]
    assert render_args([], values) == []


def test_the_pods_of_one_workload_share_their_injected_containers_and_the_shared_set_is_bounded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    annotations = {"entourage.dev/wait-for": "db:5432", "entourage.dev/logging": "true"}
    first, second = (inject_pod(reference_pod(annotations), settings) for _ in range(2))
    assert first.pod["spec"]["initContainers"][0] is second.pod["spec"]["initContainers"][0]
    assert first.pod["spec"]["containers"][-1] is second.pod["spec"]["containers"][-1]
    fresh = caches.BoundedCache("containers", max_entries=common.SHARED_LIMIT, max_bytes=common.SHARED_BYTES, on_evict=patch.forget)
    monkeypatch.setattr(common, "_shared", fresh)
    monkeypatch.setattr(patch, "_encoded", {})
    for port in range(1, common.SHARED_LIMIT + 11):
        inject_pod(reference_pod({"entourage.dev/wait-for": f"db:{port}"}), settings)
    assert len(fresh.entries) == common.SHARED_LIMIT
    assert len(patch._encoded) == common.SHARED_LIMIT, "the encodings of containers no longer kept are forgotten"
