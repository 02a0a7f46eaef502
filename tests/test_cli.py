"""`entourage inject` and `entourage certs`, run in-process the way a user runs them."""

from __future__ import annotations

import base64
import io
import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from webhook.cli import main

WORKLOADS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {entourage.dev/logging: "true"}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {entourage.dev/wait-for: "db:5432", entourage.dev/logging: "true", entourage.dev/native-sidecars: "true"}}
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: "report:1"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "postgres:17"}]
"""


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main(argv, stdin=io.StringIO(stdin), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_inject_handles_workload_templates_and_passes_other_documents_through() -> None:
    code, out, err = run(["inject", "-f", "-"], WORKLOADS)
    assert code == 0 and err == ""
    deployment, service, cronjob, statefulset = yaml.safe_load_all(out)
    assert [c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["web", "entourage-logging"]
    assert service == yaml.safe_load(WORKLOADS.split("---")[1])
    job_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert [c["name"] for c in job_pod["initContainers"]] == ["entourage-wait-db-5432", "entourage-logging"]
    assert statefulset == list(yaml.safe_load_all(WORKLOADS))[3]


def test_inject_reports_a_denied_document_and_exits_non_zero(tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {entourage.dev/wait-for: 'db;reboot'}}\nspec: {containers: [{name: a, image: 'a:1'}]}\n"
    )
    code, out, err = run(["inject", "-f", str(manifest)])
    assert code == 1 and out == ""
    assert "document 0 (Pod p): entourage.dev/wait-for: 'db;reboot'" in err


def test_inject_says_so_when_the_yaml_is_broken() -> None:
    code, _, err = run(["inject", "-f", "-"], "a: [b")
    assert code == 2 and "not valid YAML" in err


BILLION_LAUGHS = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: fine}
---
apiVersion: v1
kind: Pod
metadata:
  name: laughs
  annotations: {entourage.dev/logging: "true"}
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
spec: {containers: [{name: app, image: "app:1"}]}
"""


def test_inject_refuses_yaml_aliases_at_once_naming_the_document(tmp_path: Path) -> None:
    """The billion laughs: nine aliases of nine, about 4.6 × 10^8 strings once expanded."""
    manifest = tmp_path / "laughs.yaml"
    manifest.write_text(BILLION_LAUGHS)
    started = time.monotonic()
    code, out, err = run(["inject", "-f", str(manifest)])
    assert time.monotonic() - started < 1
    assert code == 2 and out == ""
    assert err == f"entourage: {manifest}: document 1, line 11: YAML aliases (*a) are not accepted: write the value out in full\n"


def test_an_anchor_without_an_alias_is_plain_yaml() -> None:
    code, out, err = run(["inject", "-f", "-"], "kind: ConfigMap\ndata: &shared {a: b}\n")
    assert code == 0 and err == "" and yaml.safe_load(out) == {"kind": "ConfigMap", "data": {"a": "b"}}


def test_inject_refuses_a_broken_configuration(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("onError: sometimes\n")
    code, _, err = run(["inject", "-f", "-", "--config", str(config)], WORKLOADS)
    assert code == 2 and "onError: expected deny or allow" in err


def test_certs_writes_a_ca_and_a_serving_certificate_for_the_service(tmp_path: Path) -> None:
    code, out, _ = run(["certs", "--service", "entourage", "--namespace", "platform", "--out-dir", str(tmp_path)])
    assert code == 0
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    assert base64.b64decode(out.strip()) == ca.public_bytes(Encoding.PEM)
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "entourage",
        "entourage.platform",
        "entourage.platform.svc",
        "entourage.platform.svc.cluster.local",
        "localhost",
    ]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    cert.verify_directly_issued_by(ca)


def test_certs_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert run(["certs", "--service", "s", "--namespace", "n", "--out-dir", str(tmp_path)])[0] == 0
    code, _, err = run(["certs", "--service", "s", "--namespace", "n", "--out-dir", str(tmp_path)])
    assert code == 1 and "refusing to overwrite" in err and "--force" in err
    assert run(["certs", "--service", "s", "--namespace", "n", "--out-dir", str(tmp_path), "--force"])[0] == 0


def test_the_command_runs_as_python_dash_m_webhook() -> None:
    result = subprocess.run([sys.executable, "-m", "webhook", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("entourage ")
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "inject", "-f", "-"],
        input=json.dumps({"kind": "ConfigMap"}),
        capture_output=True,
        text=True,
        check=True,
    )
    assert yaml.safe_load(result.stdout) == {"kind": "ConfigMap"}


def test_shared_containers_are_written_out_in_full_never_as_yaml_aliases() -> None:
    from webhook import yamlio

    container = {"name": "entourage-logging", "image": "busybox:1.36.1"}
    text = yamlio.dump_all([{"spec": {"containers": [container], "initContainers": [container]}}])
    assert "&" not in text and "*" not in text
    assert yamlio.load_all(text)[0]["spec"]["initContainers"] == [container]


def test_inject_refuses_yaml_aliases_at_once(tmp_path) -> None:
    """A "billion laughs" manifest fails fast with a clear error instead of expanding."""
    import io
    import time

    from webhook.cli import main

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        previous = chr(ord("a") + level - 1)
        name = chr(ord("a") + level)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = main(["inject", "-f", str(bomb)], stdout=stdout, stderr=stderr)
    assert time.perf_counter() - started < 1.0
    assert code != 0 and stdout.getvalue() == ""
    assert "aliases" in stderr.getvalue() and "*a" in stderr.getvalue()


def test_serve_refuses_an_event_lookup_rate_or_owner_memory_out_of_range_naming_the_flag() -> None:
    for flag, value, expected in (
        ("--event-lookups-per-second", "0", "expected a rate above 0 and at most 10000 a second, got '0'"),
        ("--event-lookups-per-second", "1e9", "expected a rate above 0 and at most 10000 a second, got '1e9'"),
        ("--event-owner-cache-seconds", "-1", "expected seconds from 0 to 3600, got '-1'"),
    ):
        result = subprocess.run([sys.executable, "-m", "webhook", "serve", flag, value], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2 and f"argument {flag}: {expected}" in result.stderr, result.stderr


def test_serve_refuses_a_metrics_port_equal_to_the_webhook_port_or_out_of_range(tmp_path: Path) -> None:
    stderr = io.StringIO()
    code = main(
        ["serve", "--tls-cert-file", "c", "--tls-private-key-file", "k", "--standalone", "--port", "8443", "--metrics-port", "8443"],
        stderr=stderr,
    )
    assert code == 2 and "--metrics-port must differ from --port (8443)" in stderr.getvalue()
    completed = subprocess.run(
        [sys.executable, "-m", "webhook", "serve", "--metrics-port", "70000"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 2 and "expected a port from 1 to 65535, got '70000'" in completed.stderr


def test_config_validate_accepts_a_good_file_and_names_the_key_of_each_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("onError: allow\nlimits: {maxAdapters: 2}\n")
    typo = tmp_path / "typo.yaml"
    typo.write_text("onErrors: deny\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("profiles: [\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["config", "validate", str(good), str(typo), str(broken)], stdout=out, stderr=err) == 1
    assert out.getvalue().startswith(f"{good}: valid (annotationPrefix entourage.dev, onError allow, ")
    problems = err.getvalue().split("entourage: invalid configuration: ")[1:]
    assert len(problems) == 2, problems  # every file is checked, not only up to the first bad one
    assert problems[0].startswith(f"{typo}: ") and "unknown key 'onErrors' (did you mean 'onError'?)" in problems[0]
    assert problems[1].startswith(f"{broken}: not valid YAML")


def test_config_validate_exits_zero_when_every_file_is_valid_and_one_when_a_file_is_missing(tmp_path: Path) -> None:
    good = tmp_path / "config.yaml"
    good.write_text("{}\n")
    assert main(["config", "validate", str(good)], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    err = io.StringIO()
    assert main(["config", "validate", str(tmp_path / "absent.yaml")], stdout=io.StringIO(), stderr=err) == 1
    assert "absent.yaml: cannot read the configuration file" in err.getvalue()
