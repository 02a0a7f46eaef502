"""An invalid configuration file at start: the real ``entourage serve`` stays up, never crash-loops.

Without a last valid copy it is unready with the reason and answers ``/mutate`` and ``/validate``
with a 503 ``Status`` naming the problem (the API server applies the webhook's failurePolicy);
it becomes ready and injects as soon as the file is valid. With ``--last-good-config`` a restart
on an invalid file serves the copy of the last valid one. See webhook/serving/reload.py.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.webhook_process import containers, review, running

INVALID = b"annotationPrefix: example.com\nonError: maybe\n"
PROBLEM = "onError: expected deny or allow, got 'maybe'"
CUSTOM = {"example.com/logging": "true"}
DEFAULT = {"entourage.dev/logging": "true"}


def test_an_invalid_file_at_start_leaves_the_process_up_and_unready_until_the_file_is_valid(tmp_path: Path) -> None:
    with running(tmp_path, config=INVALID.decode(), ready=False) as webhook, webhook.client() as client:
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json() == {
            "status": "unready",
            "reason": f"no valid configuration: {webhook.config.path('config.yaml')}: {PROBLEM}",
        }
        assert client.get("/healthz").status_code == 200

        for path in ("/mutate", "/validate"):
            answer = client.post(path, json=review(DEFAULT))
            assert answer.status_code == 503, path
            status = answer.json()
            assert (status["kind"], status["code"], status["reason"]) == ("Status", 503, "ServiceUnavailable")
            assert PROBLEM in status["message"] and "no valid configuration" in status["message"]

        time.sleep(0.6)  # three reload polls: still alive, the bad file logged and counted once
        assert webhook.process.poll() is None
        logged = [line for line in webhook.logs() if "no last valid configuration" in line["msg"]]
        assert len(logged) == 1 and PROBLEM in logged[0]["error"]
        assert webhook.metrics()["entourage_config_reload_failures_total"] == 1
        assert webhook.metrics()["entourage_config_file_valid"] == 0

        webhook.config.swap({"config.yaml": b"annotationPrefix: example.com\n"})
        webhook.wait_for(lambda: client.get("/readyz").status_code == 200, what="ready once the file is valid")
        assert webhook.metrics()["entourage_config_file_valid"] == 1
        assert client.get("/readyz").json() == {"status": "ready", "reason": "ready"}
        assert containers(client.post("/mutate", json=review(CUSTOM)).json()) == ["entourage-logging"]

        webhook.config.swap({"config.yaml": INVALID})  # invalid again while serving: the last valid one stays
        webhook.wait_for(lambda: webhook.metrics()["entourage_config_reload_failures_total"] == 2, what="the refusal")
        assert webhook.metrics()["entourage_config_file_valid"] == 0
        assert client.get("/readyz").status_code == 200
        assert containers(client.post("/mutate", json=review(CUSTOM)).json()) == ["entourage-logging"]


def test_with_a_last_good_copy_a_restart_on_an_invalid_file_serves_the_last_valid_configuration(tmp_path: Path) -> None:
    kept = tmp_path / "last-good" / "config.yaml"  # the chart keeps it in the pod's emptyDir
    valid = b"annotationPrefix: example.com\n"
    with running(tmp_path / "first", "--last-good-config", str(kept), config=valid.decode()) as webhook:
        assert kept.read_bytes() == valid
        webhook.config.swap({"config.yaml": INVALID})
        webhook.wait_for(lambda: webhook.metrics()["entourage_config_reload_failures_total"] == 1, what="the refusal")
        assert kept.read_bytes() == valid
    # The container restarts (killed above) and finds the file still invalid.
    with running(tmp_path / "second", "--last-good-config", str(kept), config=INVALID.decode()) as webhook, webhook.client() as client:
        readiness = client.get("/readyz").json()
        assert readiness["status"] == "ready"
        assert readiness["reason"].startswith(f"ready, serving the last valid configuration ({kept}) because ")
        assert PROBLEM in readiness["reason"]
        assert containers(client.post("/mutate", json=review(CUSTOM)).json()) == ["entourage-logging"]
        assert containers(client.post("/mutate", json=review(DEFAULT)).json()) == []
        assert [line["error"] for line in webhook.logs() if line["msg"].startswith("the configuration file is invalid; serving")] == [
            f"{webhook.config.path('config.yaml')}: {PROBLEM}"
        ]

        fixed = b"annotationPrefix: other.example\n"
        webhook.config.swap({"config.yaml": fixed})
        webhook.wait_for(lambda: client.get("/readyz").json()["reason"] == "ready", what="the fixed file served")
        assert containers(client.post("/mutate", json=review({"other.example/logging": "true"})).json()) == ["entourage-logging"]
        assert kept.read_bytes() == fixed


def test_a_last_good_copy_that_is_itself_invalid_is_not_served(tmp_path: Path) -> None:
    kept = tmp_path / "last-good.yaml"
    kept.write_bytes(b"limits: {maxAmbassadorRoutes: -1}\n")  # e.g. written by a version with other rules
    with running(tmp_path, "--last-good-config", str(kept), config=INVALID.decode(), ready=False) as webhook, webhook.client() as client:
        assert client.get("/readyz").status_code == 503
        assert any(line["msg"] == "the last valid configuration is not valid any more" for line in webhook.logs())
        assert client.post("/mutate", json=review(DEFAULT)).status_code == 503
