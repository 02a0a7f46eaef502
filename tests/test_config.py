"""The configuration file: built-ins merged with the user's profiles, everything validated at load."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import reference_pod
from tests.podcheck import assert_valid_injected_pod
from webhook.engine.inject import inject_pod
from webhook.engine.settings import (
    RESTRICTED_SECURITY_CONTEXT,
    Defaults,
    Limits,
    build_settings,
    load_settings,
    parse_settings,
)
from webhook.errors import ConfigError

ADAPTER = """
profiles:
  adapter:
    my-exporter:
      image: registry.example/exporter:1.2.3
      command: [/exporter]
      args: ["--listen=:{port}"]
      ports: [{name: metrics, containerPort: "{port}"}]
      params:
        port: {type: port, default: "9100"}
      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 50m, memory: 32Mi}}
"""


def test_no_file_means_the_built_in_catalog() -> None:
    settings = load_settings(None, environ={})
    assert set(settings.profiles["logging"]) == {"tail", "fluent-bit"}
    assert set(settings.profiles["adapter"]) == {"nginx-prometheus", "statsd-prometheus"}
    assert settings.native_sidecars == "auto" and settings.on_error == "deny"


def test_the_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("nativeSidecars: true\n")
    assert load_settings(None, environ={"ENTOURAGE_CONFIG": str(path)}).native_sidecars == "true"


def test_a_config_only_adapter_is_added_and_built_ins_stay() -> None:
    settings = parse_settings(ADAPTER)
    assert settings.profiles["adapter"]["my-exporter"].params["port"].default == "9100"
    assert "nginx-prometheus" in settings.profiles["adapter"]


def test_a_built_in_profile_can_be_pointed_at_a_mirror() -> None:
    settings = parse_settings("profiles: {logging: {tail: {image: 'mirror.example/busybox:1.36.1'}}}")
    tail = settings.profiles["logging"]["tail"]
    assert tail.image == "mirror.example/busybox:1.36.1" and tail.command[0] == "sh"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nativeSidecar: true", "unknown key 'nativeSidecar' (did you mean 'nativeSidecars'?)"),
        ("onError: maybe", "onError: expected deny or allow"),
        ("annotationPrefix: 'Not A Prefix'", "annotationPrefix: expected a DNS subdomain"),
        ("limits: {maxAmbassadorRoutes: 1000}", "limits.maxAmbassadorRoutes: expected a whole number from 1 to 64"),
        ("limits: {maxMemory: lots}", "limits.maxMemory: 'lots' is not a Kubernetes quantity"),
        ("defaults: {logging: vector}", "defaults.logging: no logging profile named 'vector'"),
        ("defaults: {waitForTimeout: forever}", "defaults.waitForTimeout: 'forever': expected a duration"),
        ("profiles: {sidecar: {}}", "profiles: unknown key 'sidecar'"),
        (ADAPTER.replace("exporter:1.2.3", "exporter:latest"), "pinned tag or digest (not 'latest')"),
        (ADAPTER.replace("exporter:1.2.3", "exporter"), "pinned tag or digest"),
        (ADAPTER.replace("--listen=:{port}", "--listen=:{prot}"), "unknown placeholder {prot} (did you mean 'port'?)"),
        (ADAPTER.replace("cpu: 50m", "cpu: 5m"), "requests.cpu 10m is above limits.cpu 5m"),
        (ADAPTER.replace("limits: {cpu: 50m, memory: 32Mi}", "limits: {cpu: 50m}"), "limits.memory: required"),
        (ADAPTER.replace('default: "9100"', 'default: "x"'), "params.port.default: 'x': expected a port number"),
        (ADAPTER.replace("type: port", "type: number"), "params.port.type: expected one of port"),
        (ADAPTER + "      securityContext: {privileged: true}\n", "'privileged' cannot be set"),
        (ADAPTER + "      securityContext: {runAsUser: 0}\n", "runAsUser: expected a non-zero user or group id"),
        (ADAPTER + "      securityContext: {capabilities: {add: [NET_ADMIN]}}\n", "only NET_BIND_SERVICE is allowed"),
        (ADAPTER + "      tlsArgs: [x]\n", "only ambassadors have tlsArgs"),
        ("profiles: {ambassador: {envoy: {image: 'envoy:1.31.0', command: [envoy], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}}}}", "tlsArgs: required for an ambassador"),
        ("[1, 2]", "expected a mapping"),
        ("key: [unclosed", "not valid YAML"),
    ],
)
def test_an_invalid_configuration_is_refused_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text, source="config.yaml")
    assert str(error.value).startswith("config.yaml: ") and message in str(error.value)


def test_a_profile_security_context_starts_restricted_and_may_only_tighten() -> None:
    settings = parse_settings(ADAPTER + "      securityContext: {runAsUser: 1000, readOnlyRootFilesystem: false}\n")
    context = settings.profiles["adapter"]["my-exporter"].security_context
    assert context["runAsUser"] == 1000 and context["readOnlyRootFilesystem"] is False
    for key in ("allowPrivilegeEscalation", "capabilities", "runAsNonRoot", "seccompProfile", "privileged"):
        assert context[key] == RESTRICTED_SECURITY_CONTEXT[key]


@pytest.mark.parametrize("capabilities", ["{add: [NET_BIND_SERVICE]}", "{add: []}", "{}"])
def test_a_capabilities_override_still_drops_all(capabilities: str) -> None:
    settings = parse_settings(ADAPTER + f"      securityContext: {{capabilities: {capabilities}}}\n")
    context = settings.profiles["adapter"]["my-exporter"].security_context
    added = ["NET_BIND_SERVICE"] if "NET_BIND_SERVICE" in capabilities else []
    assert context["capabilities"] == {"drop": ["ALL"], **({"add": added} if added else {})}
    pod = reference_pod({"entourage.dev/adapter": "my-exporter"})
    injection = inject_pod(pod, settings)
    assert_valid_injected_pod(injection.pod, injection.components)
    (exporter,) = (c for c in injection.pod["spec"]["containers"] if c["name"] == "entourage-adapter-my-exporter")
    assert exporter["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_a_built_in_profile_override_merges_its_params_by_name() -> None:
    settings = parse_settings("profiles: {adapter: {nginx-prometheus: {params: {port: {type: port, default: '9200'}, scheme: {type: enum, values: [http, https], default: http}}}}}")
    params = settings.profiles["adapter"]["nginx-prometheus"].params
    assert {name: param.default for name, param in params.items()} == {"status-port": "8080", "status-path": "/stub_status", "port": "9200", "scheme": "http"}
    injection = inject_pod(reference_pod({"entourage.dev/adapter": "nginx-prometheus"}), settings)
    (exporter,) = (c for c in injection.pod["spec"]["containers"] if c["name"] == "entourage-adapter-nginx-prometheus")
    assert exporter["args"] == ["--nginx.scrape-uri=http://127.0.0.1:8080/stub_status", "--web.listen-address=:9200"]


def test_a_built_in_profile_override_replaces_every_other_key_it_sets() -> None:
    settings = parse_settings("profiles: {logging: {tail: {args: ['{path-globs}'], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 2m, memory: 2Mi}}}}}")
    tail = settings.profiles["logging"]["tail"]
    assert tail.args == ("{path-globs}",) and tail.resources == {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"cpu": "2m", "memory": "2Mi"}}
    assert tail.image == "busybox:1.36.1" and tail.command[0] == "sh"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: {logging: {tail: {resources: {requests: {cpu: 5m, memory: 8Mi}}}}}", "profiles.logging.tail.resources.limits.cpu: required"),
        ("profiles: {adapter: {nginx-prometheus: {params: null}}}", "unknown placeholder {status-port}"),
    ],
    ids=["resources-replaced-whole", "params-cleared"],
)
def test_a_built_in_profile_override_replaces_a_key_whole_except_params(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zzz: 1", "configuration: configuration: unknown key 'zzz'; known keys: annotationPrefix, nativeSidecars, onError, defaults, limits, profiles"),
        ("onErrors: deny", "configuration: configuration: unknown key 'onErrors' (did you mean 'onError'?); known keys: annotationPrefix, nativeSidecars, onError, defaults, limits, profiles"),
        ("defaults: {logging: vectr}", "configuration: defaults.logging: no logging profile named 'vectr'"),
        ("defaults: {logging: tial}", "configuration: defaults.logging: no logging profile named 'tial' (did you mean 'tail'?)"),
    ],
)
def test_configuration_errors_suggest_the_nearest_key_only_when_one_is_close(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text)
    assert str(error.value) == message


EVERY_DEFAULT_AND_LIMIT = """
defaults: {logging: fluent-bit, ambassador: envoy, waitFor: curl, waitForTimeout: 90s, loggingPaths: [/srv/a, /srv/b]}
limits: {maxAmbassadorRoutes: 1, maxWaitForTargets: 2, maxLoggingPaths: 3, maxAdapters: 64, maxCpu: 500m, maxMemory: 1Gi}
profiles:
  ambassador:
    envoy:
      image: envoyproxy/envoy:v1.31.0
      command: [/proxy]
      args: ["{local-port}"]
      tlsArgs: ["{local-port}"]
      readyCommand: [/proxy]
      resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
  waitFor:
    curl:
      image: curlimages/curl:8.11.1
      command: [/wait]
      args: ["{target}"]
      resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
"""


def test_every_default_and_limit_takes_effect() -> None:
    settings = parse_settings(EVERY_DEFAULT_AND_LIMIT)
    assert settings.defaults == Defaults(logging="fluent-bit", ambassador="envoy", wait_for="curl", wait_for_timeout=90, logging_paths=("/srv/a", "/srv/b"))
    assert settings.limits == Limits(1, 2, 3, 64, Decimal("0.5"), Decimal(2**30), "500m", "1Gi")
    assert (Defaults(), Limits()) == (build_settings({}).defaults, build_settings({}).limits)


@pytest.mark.parametrize("value", [1, 64])
def test_a_count_limit_may_be_1_to_64(value: int) -> None:
    for key in ("maxAmbassadorRoutes", "maxWaitForTargets", "maxLoggingPaths", "maxAdapters"):
        parse_settings(f"limits: {{{key}: {value}}}")


@pytest.mark.parametrize("value", ["0", "65", "true", "'8'", "2.5", "-1"])
def test_other_count_limits_are_refused(value: str) -> None:
    for key in ("maxAmbassadorRoutes", "maxWaitForTargets", "maxLoggingPaths", "maxAdapters"):
        with pytest.raises(ConfigError) as error:
            parse_settings(f"limits: {{{key}: {value}}}", source="c.yaml")
        assert str(error.value).startswith(f"c.yaml: limits.{key}: expected a whole number from 1 to 64, got ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("defaults: {logging: tail, lgging: x}", "defaults: unknown key 'lgging' (did you mean 'logging'?); known keys: logging, ambassador, waitFor, waitForTimeout, loggingPaths"),
        ("limits: {maxCpus: 1}", "limits: unknown key 'maxCpus' (did you mean 'maxCpu'?); known keys: maxAmbassadorRoutes, maxWaitForTargets, maxLoggingPaths, maxAdapters, maxCpu, maxMemory"),
        ("defaults: {loggingPaths: [/srv/]}", "defaults.loggingPaths: '/srv/': expected an absolute directory such as /var/log/app (letters, digits and ._-)"),
        ("defaults: {loggingPaths: /srv}", "defaults.loggingPaths: expected a list of strings"),
        ("defaults: {waitForTimeout: 120}", "defaults.waitForTimeout: 120: expected a duration such as 90s, 5m, 1h30m, or 0 for no limit"),
        ("limits: {maxCpu: 2 cores}", "limits.maxCpu: '2 cores' is not a Kubernetes quantity (examples: 100m, 0.5, 64Mi, 1Gi)"),
        ("limits: {maxMemory: 1 GB}", "limits.maxMemory: '1 GB' is not a Kubernetes quantity (examples: 100m, 0.5, 64Mi, 1Gi)"),
        ("defaults: {ambassador: envy}", "defaults.ambassador: no ambassador profile named 'envy'"),
        ("defaults: {waitFor: busybx}", "defaults.waitFor: no waitFor profile named 'busybx' (did you mean 'busybox'?)"),
        ("nativeSidecars: sometimes", "nativeSidecars: expected auto, true or false, got 'sometimes'"),
        ("annotationPrefix: " + "a" * 201, "annotationPrefix: expected a DNS subdomain such as entourage.dev, got '" + "a" * 201 + "'"),
        ("annotationPrefix: 7", "annotationPrefix: expected a DNS subdomain such as entourage.dev, got 7"),
        ("profiles: []", "profiles: expected a mapping, got list"),
    ],
)
def test_settings_errors_name_the_setting_and_the_value_word_for_word(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(text, source="c.yaml")
    assert str(error.value) == f"c.yaml: {message}"


def test_settings_read_as_documented() -> None:
    settings = parse_settings("annotationPrefix: " + ".".join(["a" * 63] * 3) + "\nnativeSidecars: TRUE\nonError: allow\n")
    assert (settings.annotation_prefix, settings.native_sidecars, settings.on_error) == (".".join(["a" * 63] * 3), "true", "allow")
    assert parse_settings("nativeSidecars: false").native_sidecars == "false"
    assert parse_settings("").annotation_prefix == "entourage.dev" and parse_settings("{}").native_sidecars == "auto"


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_settings(str(tmp_path / "missing.yaml"))
