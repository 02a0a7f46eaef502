"""Run the busybox scripts in webhook/scripts for real, exactly as the injected containers do.

Every script runs as ``busybox sh -c <script text> <$0> args...`` with a PATH that holds only
busybox applets, so the commands used are busybox's, not the host's coreutils.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from webhook import certs
from webhook.engine.grammar import MAX_DURATION_SECONDS, parse_duration
from webhook.engine.scripts import read

BUSYBOX = shutil.which("busybox")


def wait_for_cmd(*args: str) -> list[str]:
    assert BUSYBOX is not None
    return [BUSYBOX, "sh", "-c", read("wait_for.sh"), "entourage-wait-for", *args]


def tail_cmd(*dirs: str) -> list[str]:
    assert BUSYBOX is not None
    return [BUSYBOX, "sh", "-c", read("tail_logs.sh"), "entourage-logging", *dirs]


def run_wait_for(env: dict[str, str], *args: str, limit: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(wait_for_cmd(*args), env=env, capture_output=True, text=True, timeout=limit)


def free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


WAITING = re.compile(r"^waiting for (?P<target>.+) \((?P<elapsed>\d+)s elapsed\)$")


def elapsed_values(stdout: str) -> list[int]:
    return [int(m["elapsed"]) for line in stdout.splitlines() if (m := WAITING.match(line))]


@contextlib.contextmanager
def listen_later(delay: float, family: int = socket.AF_INET, host: str = "127.0.0.1") -> Iterator[int]:
    """Yield a port on ``host`` that starts accepting TCP connections after ``delay`` seconds."""
    port = free_port(family, host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    stop = threading.Event()

    def bind_later() -> None:
        if not stop.wait(delay):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(16)

    thread = threading.Thread(target=bind_later, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        sock.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers with the status codes in ``server.plan`` in turn, then ``server.final``."""

    server: _PlanServer

    def do_GET(self) -> None:
        with self.server.lock:
            status = self.server.plan.pop(0) if self.server.plan else self.server.final
            self.server.hits += 1
        self.send_response(status)
        if 300 <= status < 400:
            # a redirect to a place that is NOT up: the first status must decide
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class _PlanServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, plan: list[int], final: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.plan = list(plan)
        self.final = final
        self.hits = 0
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # busybox may drop a connection mid-request (timeouts); not a test failure


@contextlib.contextmanager
def http_server(plan: list[int], final: int, tls: ssl.SSLContext | None = None) -> Iterator[_PlanServer]:
    server = _PlanServer(plan, final)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.crt, and tls.crt/tls.key it signed for localhost and 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    certs.write(certs.generate("upstream", "test"), directory)
    return directory


@pytest.fixture(scope="module")
def tls_context(tls_dir: Path) -> ssl.SSLContext:
    """A server context at OpenSSL 3's default security level (which busybox's own TLS client
    fails to negotiate with: "handshake failure", the reason https needs curl)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_dir / "tls.crt", tls_dir / "tls.key")
    return context


@pytest.fixture(params=["busybox", "curl"])
def http_env(request: pytest.FixtureRequest, busybox_env: dict[str, str], curl_env: dict[str, str]) -> dict[str, str]:
    """http targets are checked by curl when the image has it, by busybox wget otherwise: both."""
    return curl_env if request.param == "curl" else busybox_env


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# the loader
# --------------------------------------------------------------------------------------------


def test_read_returns_the_shipped_script_text_and_caches_it() -> None:
    text = read("wait_for.sh")
    assert "entourage wait-for" in text
    assert read("wait_for.sh") is text
    assert "tail -n +1 -f" in read("tail_logs.sh")


def test_read_refuses_names_outside_the_package() -> None:
    with pytest.raises(ValueError, match=r"invalid script name: '\.\./__init__\.py'"):
        read("../__init__.py")


@pytest.mark.parametrize("name", ["wait_for.sh", "tail_logs.sh"])
def test_scripts_never_eval_and_pass_the_shell_syntax_check(name: str) -> None:
    text = read(name)
    assert not re.search(r"\beval\b", text)
    assert BUSYBOX is not None
    checked = subprocess.run([BUSYBOX, "sh", "-n", "-c", text], capture_output=True, text=True, timeout=10)
    assert checked.returncode == 0, checked.stderr


# --------------------------------------------------------------------------------------------
# wait_for.sh
# --------------------------------------------------------------------------------------------


def test_tcp_target_that_opens_after_two_seconds_succeeds(busybox_env: dict[str, str]) -> None:
    with listen_later(2.0) as port:
        target = f"127.0.0.1:{port}"
        result = run_wait_for(busybox_env, "tcp", target, "20")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"waiting for {target} (") for line in lines)
    assert re.fullmatch(rf"{re.escape(target)} is available after \d+s", lines[-1])


def test_tcp_target_in_ipv6_bracket_form_succeeds(busybox_env: dict[str, str]) -> None:
    if not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback on this machine")
    with listen_later(0.0, socket.AF_INET6, "::1") as port:
        time.sleep(0.2)
        target = f"[::1]:{port}"
        result = run_wait_for(busybox_env, "tcp", target, "10")
    assert result.returncode == 0, result.stderr
    assert f"{target} is available after" in result.stdout


def test_tcp_target_that_never_answers_times_out_within_five_seconds(busybox_env: dict[str, str]) -> None:
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run_wait_for(busybox_env, "tcp", target, "3", limit=10)
    took = time.monotonic() - started
    assert result.returncode != 0
    assert took < 5.5
    assert re.fullmatch(rf"timed out after \d+s waiting for {re.escape(target)} \(tcp\)\n", result.stderr)


def test_http_target_answering_503_then_200_succeeds(http_env: dict[str, str]) -> None:
    with http_server([503, 503], final=200) as server:
        url = f"http://127.0.0.1:{server.server_port}/healthz"
        result = run_wait_for(http_env, "http", url, "20")
        hits = server.hits
    assert result.returncode == 0, result.stderr
    assert hits == 3
    assert len(elapsed_values(result.stdout)) == 2
    assert f"{url} is available after" in result.stdout


def test_http_target_answering_302_counts_as_up(http_env: dict[str, str]) -> None:
    with http_server([], final=302) as server:
        url = f"http://127.0.0.1:{server.server_port}/"
        result = run_wait_for(http_env, "http", url, "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting for" not in result.stdout


def test_http_target_answering_404_forever_times_out(http_env: dict[str, str]) -> None:
    with http_server([], final=404) as server:
        url = f"http://127.0.0.1:{server.server_port}/missing"
        result = run_wait_for(http_env, "http", url, "3", limit=10)
    assert result.returncode == 1
    assert re.fullmatch(rf"timed out after \d+s waiting for {re.escape(url)} \(http\)\n(last error: HTTP status 404\n)?", result.stderr)


def test_https_target_whose_certificate_verifies_with_the_given_ca_succeeds(
    curl_env: dict[str, str], tls_context: ssl.SSLContext, tls_dir: Path
) -> None:
    with http_server([503], final=200, tls=tls_context) as server:
        url = f"https://localhost:{server.server_port}/ready"
        result = run_wait_for(curl_env, "https", url, "10", str(tls_dir / "ca.crt"), "false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{url} is available after" in result.stdout
    assert result.stderr == ""


def test_https_target_that_does_not_verify_with_the_system_roots_times_out_saying_why(
    curl_env: dict[str, str], tls_context: ssl.SSLContext
) -> None:
    with http_server([], final=200, tls=tls_context) as server:
        url = f"https://localhost:{server.server_port}/ready"
        result = run_wait_for(curl_env, "https", url, "2", "system", "false", limit=10)
        hits = server.hits
    assert result.returncode == 1
    assert hits == 0, "no request is sent to a server that did not prove its name"
    first, second = result.stderr.splitlines()
    assert re.fullmatch(rf"timed out after \d+s waiting for {re.escape(url)} \(https\)", first)
    assert second.startswith("last error: SSL certificate problem: unable to get local issuer certificate"), second


def test_https_target_without_verification_succeeds_and_warns(curl_env: dict[str, str], tls_context: ssl.SSLContext) -> None:
    with http_server([], final=200, tls=tls_context) as server:
        url = f"https://localhost:{server.server_port}/ready"
        result = run_wait_for(curl_env, "https", url, "5", "system", "true")
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"warning: {url}: the server certificate is NOT verified (insecure=true)\n"


def test_https_without_curl_is_refused_rather_than_checked_by_busybox(busybox_env: dict[str, str]) -> None:
    result = run_wait_for(busybox_env, "https", "https://localhost:1/", "5")
    assert result.returncode == 2
    assert "https needs curl in the image" in result.stderr


def test_dns_name_localhost_resolves(busybox_env: dict[str, str]) -> None:
    result = run_wait_for(busybox_env, "dns", "localhost", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("localhost is available after ")


def test_dns_name_that_does_not_exist_times_out_with_a_clear_message(busybox_env: dict[str, str]) -> None:
    result = run_wait_for(busybox_env, "dns", "does-not-exist.invalid", "3", limit=15)
    assert result.returncode == 1
    assert re.fullmatch(r"timed out after [3-5]s waiting for does-not-exist\.invalid \(dns\)\n", result.stderr)
    elapsed = elapsed_values(result.stdout)
    # elapsed is whole seconds from `date +%s`, so a value may be one more than the sleeps sum
    assert elapsed[0] in (0, 1)
    assert len(elapsed) >= 3


def test_target_with_shell_syntax_is_never_executed(busybox_env: dict[str, str], tmp_path: Path) -> None:
    env = {**busybox_env}
    result = subprocess.run(
        wait_for_cmd("dns", "$(touch pwned)`touch pwned2`;touch pwned3", "1"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 1
    assert list(tmp_path.iterdir()) == []
    assert re.search(re.escape("waiting for $(touch pwned)`touch pwned2`;touch pwned3 (") + "[01]s elapsed\\)", result.stdout), (
        result.stdout
    )


@pytest.mark.slow
def test_back_off_between_attempts_is_exponential_and_bounded(busybox_env: dict[str, str]) -> None:
    target = f"127.0.0.1:{free_port()}"
    result = run_wait_for(busybox_env, "tcp", target, "16", limit=30)
    assert result.returncode == 1
    elapsed = elapsed_values(result.stdout)
    assert elapsed[0] in (0, 1)
    gaps = [b - a for a, b in itertools.pairwise(elapsed)]
    # The script sleeps 1, 2, 4, 8, 10, ... but never past the deadline, computing the cut from
    # the same whole-second elapsed values it prints. A gap is never shorter than its sleep; a
    # loaded machine may add up to 2 s (the check itself, rounding of `date +%s`).
    delays = [min(2**i, 10) for i in range(len(gaps))]
    sleeps = [min(delay, 16 - start) for delay, start in zip(delays, elapsed[:-1], strict=True)]
    assert all(0 <= gap - nap <= 2 for gap, nap in zip(gaps, sleeps, strict=True)), (gaps, sleeps)
    assert sleeps[:3] == [1, 2, 4], (gaps, sleeps)
    assert 16 <= elapsed[-1] <= 18


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["tcp"],
        ["tcp", "127.0.0.1:80"],
        ["tcp", "127.0.0.1:80", "5", "extra"],
        ["tcp", "127.0.0.1:80", "5", "system", "maybe"],
        ["tcp", "127.0.0.1:80", "5", "system", "false", "extra"],
        ["ftp", "example.com", "5"],
        ["tcp", "no-port-here", "5"],
        ["tcp", "host:http", "5"],
        ["tcp", "127.0.0.1:80", "-1"],
        ["tcp", "127.0.0.1:80", "soon"],
        ["dns", "", "5"],
    ],
)
def test_bad_arguments_exit_with_status_two(busybox_env: dict[str, str], args: list[str]) -> None:
    result = run_wait_for(busybox_env, *args, limit=10)
    assert result.returncode == 2
    assert result.stderr
    assert "waiting for" not in result.stdout


def test_the_wait_script_takes_the_longest_timeout_the_grammar_gives_and_refuses_one_more_second(
    busybox_env: dict[str, str],
) -> None:
    longest = parse_duration("24h")
    assert longest == MAX_DURATION_SECONDS
    for too_long in ("24h1s", "999999999h", "1441m"):
        with pytest.raises(ValueError, match="at most 24h"):
            parse_duration(too_long)
    with listen_later(0.0) as port:
        time.sleep(0.2)
        accepted = run_wait_for(busybox_env, "tcp", f"127.0.0.1:{port}", str(longest))
    assert accepted.returncode == 0, accepted.stderr
    for beyond in (str(longest + 1), "9" * 30):
        refused = run_wait_for(busybox_env, "tcp", "127.0.0.1:1", beyond)
        assert refused.returncode == 2
        assert "above the maximum of 86400 seconds" in refused.stderr


def test_wait_for_stops_promptly_on_sigterm(busybox_env: dict[str, str]) -> None:
    with subprocess.Popen(
        wait_for_cmd("tcp", f"127.0.0.1:{free_port()}", "0"),
        env=busybox_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=2)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert proc.returncode == 143


# --------------------------------------------------------------------------------------------
# tail_logs.sh
# --------------------------------------------------------------------------------------------


def _live_processes_mentioning(marker: str) -> list[tuple[int, str]]:
    """(pid, cmdline) of non-zombie processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat.rsplit(")", 1)[-1].split()[0]
        if marker in cmdline and state not in ("Z", "X"):
            found.append((int(entry.name), cmdline))
    return found


def _process_group(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[-1].split()[3])


def _live_process_groups(groups: set[int]) -> list[int]:
    """Pids of non-zombie processes in any of ``groups``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[3]) in groups and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _followers(marker: str) -> list[int]:
    """Process groups of the running followers: each is led by `sh -c ... entourage-follow PATH`."""
    return [pid for pid, cmd in _live_processes_mentioning(f"entourage-follow {marker}") if _process_group(pid) == pid]


class TailRun:
    def __init__(self, proc: subprocess.Popen[bytes], out: Path) -> None:
        self.proc = proc
        self.out = out

    def lines(self) -> list[str]:
        return self.out.read_bytes().decode("utf-8", errors="replace").splitlines()

    def wait_for_line(self, line: str, within: float = 6.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if line in self.lines():
                return
            assert self.proc.poll() is None, "tail_logs.sh exited early"
            time.sleep(0.1)
        raise AssertionError(f"{line!r} not printed within {within}s; got {self.lines()!r}")


@pytest.fixture
def run_tail(busybox_env: dict[str, str], tmp_path: Path) -> Iterator:
    started: list[TailRun] = []
    marker = str(tmp_path)

    def start(*dirs: Path) -> TailRun:
        out = tmp_path / f"stdout-{len(started)}.txt"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                tail_cmd(*map(str, dirs)),
                env=busybox_env,
                cwd=tmp_path,
                stdout=sink,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        run = TailRun(proc, out)
        started.append(run)
        return run

    yield start

    for run in started:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait(3)
    # Followers (and their tail and awk, whose command lines do not name the file) live in
    # process groups led by a shell that names it.
    for group in {_process_group(pid) for pid, _ in _live_processes_mentioning(marker)}:
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)


def test_file_existing_before_start_is_printed_from_its_beginning(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("first\nsecond\n")
    run = run_tail(logs)
    run.wait_for_line(f"{logs}/app.log: first")
    run.wait_for_line(f"{logs}/app.log: second")
    with (logs / "app.log").open("a") as f:
        f.write("appended later\n")
    run.wait_for_line(f"{logs}/app.log: appended later", within=4)


def test_file_created_one_second_after_start_is_printed(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    run = run_tail(logs)
    time.sleep(1)
    (logs / "late.log").write_text("hello from a new file\n")
    run.wait_for_line(f"{logs}/late.log: hello from a new file", within=5)


def test_directory_created_after_start_is_followed_once_it_exists(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "not-yet"
    run = run_tail(logs)
    time.sleep(0.5)
    logs.mkdir()
    (logs / "x.log").write_text("finally\n")
    run.wait_for_line(f"{logs}/x.log: finally", within=5)


@pytest.mark.slow
def test_lines_written_to_a_rotated_file_appear_and_old_lines_are_not_repeated(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("before rotation\n")
    run = run_tail(logs)
    run.wait_for_line(f"{logs}/app.log: before rotation")
    app.rename(logs / "app.log.1")
    app.write_text("after rotation 1\n")
    run.wait_for_line(f"{logs}/app.log: after rotation 1", within=5)
    with app.open("a") as f:
        f.write("after rotation 2\n")
    run.wait_for_line(f"{logs}/app.log: after rotation 2", within=4)
    # let the directory poll see app.log.1: its old content must not be printed again
    time.sleep(2.5)
    assert run.lines().count(f"{logs}/app.log: before rotation") == 1
    assert not [line for line in run.lines() if line.startswith(f"{logs}/app.log.1: ")]


def test_truncated_file_is_followed_from_its_new_beginning(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.write_text("a fairly long line before the truncation\n")
    run = run_tail(logs)
    run.wait_for_line(f"{logs}/app.log: a fairly long line before the truncation")
    app.write_text("short\n")  # truncate + write
    run.wait_for_line(f"{logs}/app.log: short", within=4)


def test_hostile_file_names_are_printed_literally_and_nothing_is_executed(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    names = [
        "with space.log",
        "$(touch pwned).log",
        "`touch pwned2`;x.log",
        "a|b&c\\n\\td'\"q.log",
        "-n 1.log",
    ]
    for name in names:
        (logs / name).write_text(f"line of {name}\n")
    (logs / "new\nline.log").write_text("skipped\n")
    run = run_tail(logs)
    for name in names:
        run.wait_for_line(f"{logs}/{name}: line of {name}")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")) == []
    assert not any("skipped" in line for line in run.lines())


def test_sigterm_stops_the_script_and_all_its_children_within_three_seconds(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(3):
        (logs / f"f{i}.log").write_text(f"{i}\n")
    run = run_tail(logs)
    for i in range(3):
        run.wait_for_line(f"{logs}/f{i}.log: {i}")
    followers = set(_followers(str(logs)))
    assert len(followers) == 3, followers
    assert len(_live_process_groups(followers)) >= 6, "each follower runs tail and awk in its group"
    started = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(3) == 143
    leftovers = _live_process_groups(followers)
    while leftovers and time.monotonic() - started < 3:
        time.sleep(0.1)
        leftovers = _live_process_groups(followers)
    assert leftovers == []


def test_tail_logs_without_directories_exits_with_status_two(busybox_env: dict[str, str]) -> None:
    result = subprocess.run(tail_cmd(), env=busybox_env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "usage" in result.stderr


@pytest.mark.parametrize("arg", ["relative/dir", "/agent/dir=relative/label", "/agent/dir=", "relative=/label"])
def test_tail_logs_refuses_a_directory_or_label_that_is_not_absolute(busybox_env: dict[str, str], arg: str) -> None:
    result = subprocess.run(tail_cmd(arg), env=busybox_env, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert "not an absolute" in result.stderr


def test_each_line_names_the_file_by_its_path_in_the_app_container(run_tail, tmp_path: Path) -> None:
    """The agent reads its own mount (DIR) and prints the app's path (LABEL) for each file."""
    first, second = tmp_path / "mnt-0", tmp_path / "mnt-1"
    first.mkdir()
    second.mkdir()
    (first / "app.log").write_text("from the app\n")
    (second / "audit.log").write_text("from the audit\n")
    run = run_tail(f"{first}=/var/log/app", f"{second}=/data/audit")
    run.wait_for_line("/var/log/app/app.log: from the app")
    run.wait_for_line("/data/audit/audit.log: from the audit")
    assert not [line for line in run.lines() if str(tmp_path) in line]


def test_a_symlink_to_etc_passwd_in_the_log_directory_is_not_shipped(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "passwd.log").symlink_to("/etc/passwd")
    (logs / "outside").symlink_to(tmp_path)  # a link to a directory: not descended into either
    (logs / "app.log").write_text("the app's own line\n")
    run = run_tail(f"{logs}=/var/log/app")
    run.wait_for_line("/var/log/app/app.log: the app's own line")
    time.sleep(2.5)  # one more poll
    assert run.lines() == ["/var/log/app/app.log: the app's own line"]


def test_a_followed_file_replaced_by_a_symlink_is_not_followed_through_it(run_tail, tmp_path: Path) -> None:
    """`tail -F` reopens a replaced name, and would follow the link; a follower keeps the file it
    checked, and the link is never opened."""
    logs = tmp_path / "logs"
    logs.mkdir()
    secret = tmp_path / "agent-only.txt"
    secret.write_text("agent secret 1\n")
    app = logs / "app.log"
    app.write_text("before\n")
    run = run_tail(f"{logs}=/var/log/app")
    run.wait_for_line("/var/log/app/app.log: before")
    (logs / "swap").symlink_to(secret)
    (logs / "swap").rename(app)  # atomically: app.log is now a link to a file outside
    with secret.open("a") as file:
        file.write("agent secret 2\n")
    (logs / "later.log").write_text("later\n")
    run.wait_for_line("/var/log/app/later.log: later")
    time.sleep(2.5)  # tail -F checks the name every second; one more poll of the directory
    assert not [line for line in run.lines() if "secret" in line]


def test_the_follower_of_a_file_that_has_no_name_any_more_is_stopped(run_tail, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("one\n")
    (logs / "other.log").write_text("two\n")
    run = run_tail(logs)
    run.wait_for_line(f"{logs}/app.log: one")
    run.wait_for_line(f"{logs}/other.log: two")
    before = set(_followers(str(logs)))
    assert len(before) == 2
    (logs / "app.log").rename(logs / "app.log.1")  # renamed: the same file, still followed
    time.sleep(2.5)
    assert set(_followers(str(logs))) == before
    (logs / "app.log.1").unlink()
    deadline = time.monotonic() + 5
    while len(_followers(str(logs))) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    [left] = _followers(str(logs))
    assert left in before
    stopped = before - {left}
    assert _live_process_groups(stopped) == [], "its tail and awk are gone too"
