"""The engine's rule for ambassador ports below 1024 is the kernel's: checked with real binds.

Each case binds a TCP port as uid 65532 (the injected containers' user) in a fresh network
namespace (``unshare -n``) whose ``net.ipv4.ip_unprivileged_port_start`` is set as the pod would
set it, and the bind must succeed exactly when ``ambassador.bind_problem`` finds no problem. Two
more cases show why the engine adds no ``NET_BIND_SERVICE``: in the bounding and inheritable sets
(what a container runtime gives a non-root process) it is gone after ``execve``; only as an
ambient capability, which Kubernetes never sets, would it work; and file capabilities on the proxy
binary are ignored under ``allowPrivilegeEscalation: false`` (no_new_privs). Needs root, ``unshare`` and
``setpriv`` (util-linux) and a system Python readable by that uid; skipped with the reason when
the machine cannot create a network namespace (an unprivileged container).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from webhook.engine.profiles.ambassador import UNPRIVILEGED_PORT_START, bind_problem

UID = 65532
PYTHON = Path("/usr/bin/python3")
BIND = "import socket,sys\ns=socket.socket()\ntry:\n s.bind(('0.0.0.0',int(sys.argv[1])))\nexcept OSError as e:\n print(e.strerror)\nelse:\n print('bound')"
SYSCTL = "/proc/sys/" + UNPRIVILEGED_PORT_START.replace(".", "/")


def bind(port: int, start: int | None, *capabilities: str) -> str:
    """'bound', or the error, of binding ``port`` as uid 65532 in a new network namespace whose
    unprivileged port start is ``start`` (None: the kernel's default, 1024)."""
    setup = f"echo {start} > {SYSCTL} && " if start is not None else ""
    drop = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *capabilities]
    command = f'{setup}exec {" ".join(drop)} {PYTHON} -I -c "$0" {port}'
    done = subprocess.run(["unshare", "-n", "sh", "-c", command, BIND], capture_output=True, text=True, timeout=20, check=False)
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[-1]


@functools.cache
def unavailable() -> str | None:
    """Why this machine cannot run these cases, or None."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace and change uid"
    missing = [tool for tool in ("unshare", "setpriv") if shutil.which(tool) is None]
    if missing or not PYTHON.exists():
        return f"needs {', '.join(missing) or PYTHON} (util-linux, a system Python)"
    try:
        probe = bind(1024, None)
    except (OSError, subprocess.SubprocessError, IndexError) as error:
        return f"cannot run unshare -n / setpriv here: {error}"
    if probe != "bound":
        return f"cannot run unshare -n / setpriv here: binding port 1024 gave {probe!r}"
    return None


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)


def pod_spec(start: int | None) -> dict[str, object]:
    if start is None:
        return {"containers": [{"name": "app"}]}
    return {"securityContext": {"sysctls": [{"name": UNPRIVILEGED_PORT_START, "value": str(start)}]}, "containers": [{"name": "app"}]}


@pytest.mark.parametrize(
    ("port", "start"),
    [(81, None), (1023, None), (1024, None), (81, 0), (81, 81), (81, 82), (443, 80), (443, 1024)],
)
def test_the_bind_succeeds_exactly_when_the_engine_allows_the_route(port: int, start: int | None) -> None:
    result = bind(port, start)
    allowed = bind_problem(port, pod_spec(start)) is None
    assert (result == "bound") == allowed, f"port {port}, sysctl {start}: the kernel says {result!r}, the engine allowed={allowed}"
    assert result in ("bound", "Permission denied")


def test_net_bind_service_as_a_runtime_grants_it_does_not_survive_a_non_root_execve() -> None:
    granted = ["--inh-caps=+net_bind_service", "--bounding-set=-all,+net_bind_service"]
    assert bind(81, None, *granted) == "Permission denied"


def test_only_an_ambient_net_bind_service_would_bind_and_kubernetes_never_sets_one() -> None:
    ambient = ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
    assert bind(81, None, *ambient) == "bound"


def test_nor_would_file_capabilities_on_the_proxy_binary_since_injected_containers_set_no_new_privs() -> None:
    """A profile image whose proxy carries ``cap_net_bind_service+ep`` binds as non-root, but not
    under ``allowPrivilegeEscalation: false`` (no_new_privs), which every injected container has."""
    busybox, setcap = shutil.which("busybox"), shutil.which("setcap")
    if busybox is None or setcap is None:
        pytest.skip("needs busybox and setcap (libcap2-bin)")
    directory = Path(tempfile.mkdtemp(prefix="entourage-caps-"))
    try:
        directory.chmod(0o755)  # uid 65532 must reach the binary
        proxy = directory / "nc"
        shutil.copy(busybox, proxy)
        proxy.chmod(0o755)
        if subprocess.run([setcap, "cap_net_bind_service+ep", str(proxy)], capture_output=True, check=False).returncode != 0:
            pytest.skip(f"the filesystem of {directory} keeps no file capabilities")

        def listens(*extra: str) -> str:
            command = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "--bounding-set=-all,+net_bind_service", *extra]
            command += ["timeout", "1", str(proxy), "-l", "-p", "81"]
            done = subprocess.run(["unshare", "-n", *command], capture_output=True, text=True, timeout=20, check=False)
            return "listening" if done.returncode == 124 else done.stderr.strip()  # 124: still listening when timed out

        assert listens() == "listening"
        assert "Permission denied" in listens("--no-new-privs")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
