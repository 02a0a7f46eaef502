"""The configuration file: built-ins merged with the user's profiles, everything validated at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.engine.settings import (
    RESTRICTED_SECURITY_CONTEXT,
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
    assert tail.image == "mirror.example/busybox:1.36.1" and tail.command[0] == "/bin/sh"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nativeSidecar: true", "unknown key 'nativeSidecar' (did you mean 'nativeSidecars'?)"),
        ("onError: maybe", "onError: expected deny or allow"),
        ("validation: strict", "validation: expected deny, warn or off, got 'strict'"),
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
        ("profiles: {ambassador: {envoy: {image: 'envoy:1.31.0', command: [/usr/local/bin/envoy], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}}}}", "tlsArgs: required for an ambassador"),
        (ADAPTER.replace("command: [/exporter]", "command: [exporter]"), "profiles.adapter.my-exporter.command[0]: 'exporter': expected an absolute path"),
        ("profiles: {ambassador: {socat: {readyCommand: [socat, -u, 'OPEN:/dev/null', 'TCP:127.0.0.1:{local-port}']}}}", "profiles.ambassador.socat.readyCommand[0]: 'socat': expected an absolute path"),
        (ADAPTER.replace("type: port", "type: int"), "profiles.adapter.my-exporter.ports[0].containerPort: '{port}' (metrics) is bound to {port}, of type int; expected a parameter of type port"),
        (ADAPTER.replace('containerPort: "{port}"', 'containerPort: "9{port}"'), "profiles.adapter.my-exporter.ports[0].containerPort: '9{port}' (metrics): expected a port number or a {parameter} of type port"),
        ("profiles: {logging: {tail: {args: ['--dirs={paths}']}}}", "profiles.logging.tail.args[0]: '--dirs={paths}': {paths} expands into one argument per directory, so it must be a whole item of args"),
        ("profiles: {logging: {tail: {env: [{name: DIRS, value: '{path-map}'}]}}}", "profiles.logging.tail.env[0]: '{path-map}': {path-map} expands"),
        ("profiles: {logging: {tail: {params: {paths: {type: name, default: x}}}}}", "profiles.logging.tail.params.paths: the name of the engine's placeholder {paths}"),
        ("defaults: {loggingPaths: [/var/log/app, /usr/local/bin]}", "defaults.loggingPaths: '/usr/local/bin': /usr/local/bin is under /usr"),
        ("defaults: {loggingPaths: [/var/log/app, /var/log/app/]}", "defaults.loggingPaths: ['/var/log/app', '/var/log/app']: each directory once"),
        ("defaults: {waitForTimeout: 25h}", "defaults.waitForTimeout: '25h': at most 24h"),
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


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_settings(str(tmp_path / "missing.yaml"))


VOLUMES = ADAPTER + """      volumes:
        - {name: config, configMap: exporter-config, mountPath: /etc/exporter}
"""


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        ("[{name: config, configMap: exporter-config, secret: x, mountPath: /etc/exporter}]", "expected exactly one of configMap or secret"),
        ("[{name: config, hostPath: /etc, mountPath: /etc/exporter}]", "unknown key 'hostPath'"),
        ("[{name: config, configMap: 'kube-system/x', mountPath: /etc/exporter}]", "'kube-system/x': expected the name of a configMap in the pod's namespace, or {param}"),
        ("[{name: config, secret: '{port}', mountPath: /etc/exporter}]", "a placeholder here names a parameter of type name"),
        ("[{name: config, secret: '{nothing}', mountPath: /etc/exporter}]", "a placeholder here names a parameter of type name"),
        ("[{name: config, configMap: c, mountPath: etc/exporter}]", "mountPath: expected an absolute, normalised path"),
        ("[{name: config, configMap: c, mountPath: /etc/../root}]", "mountPath: expected an absolute, normalised path"),
        ("[{name: config, configMap: c, mountPath: /var/run/entourage/logs}]", "/var/run/entourage/logs: /var/run/entourage, /etc/entourage, /proc, /sys, /dev are reserved"),
        ("[{name: a, configMap: c, mountPath: /etc/x}, {name: a, configMap: d, mountPath: /etc/y}]", "volumes[1].name: 'a' is used twice"),
        ("[{name: a, configMap: c, mountPath: /etc/x}, {name: b, configMap: d, mountPath: /etc/x/y}]", "volumes[1].mountPath: /etc/x/y overlaps /etc/x"),
        ("[{name: Config, configMap: c, mountPath: /etc/x}]", "name: expected a DNS label of at most 20 characters"),
        ("[{name: a, configMap: c, mountPath: /etc/x, optional: maybe}]", "optional: expected true or false"),
        ("{name: a}", "volumes: expected a list of volumes"),
    ],
)
def test_profile_volumes_come_only_from_the_pods_own_namespace_and_are_checked_at_load(volumes: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(ADAPTER + f"      volumes: {volumes}\n", source="config.yaml")
    assert message in str(error.value), str(error.value)
    assert str(error.value).startswith("config.yaml: profiles.adapter.my-exporter.volumes")


def test_a_profile_volume_is_mounted_read_only_and_shared_by_the_components_that_mount_it() -> None:
    from tests.conftest import reference_pod
    from webhook.engine.inject import inject_pod

    settings = parse_settings(VOLUMES)
    pod = reference_pod({"entourage.dev/adapter": "my-exporter"})
    injected = inject_pod(pod, settings).pod
    [exporter] = [c for c in injected["spec"]["containers"] if c["name"] == "entourage-adapter-my-exporter"]
    assert exporter["volumeMounts"] == [{"name": "entourage-my-exporter-config", "mountPath": "/etc/exporter", "readOnly": True}]
    assert {"name": "entourage-my-exporter-config", "configMap": {"name": "exporter-config", "defaultMode": 0o444, "optional": False}} in injected["spec"]["volumes"]


@pytest.mark.parametrize(("text", "mode"), [("{}", "deny"), ("validation: warn", "warn"), ("validation: 'off'", "off"), ("validation: off", "off")])
def test_validation_defaults_to_deny_and_an_unquoted_off_means_off(text: str, mode: str) -> None:
    assert parse_settings(text).validation == mode  # YAML 1.1 reads a bare off as false
