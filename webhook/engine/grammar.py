"""Strict grammars for values that end up in container commands: hosts, ports, paths, durations.

Each ``parse_*`` function returns the normalised value or raises ValueError with a sentence that
says what was expected; callers add the annotation key and value. Patterns are applied with
``fullmatch``: ``$`` alone would also accept a trailing newline. Nothing here accepts shell
metacharacters, quotes, white space or non-ASCII look-alikes: the character sets are explicit.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?$")
# Conservative subset of RFC 3986 path + query characters that can never start a shell token.
_SAFE_URL_PATH = re.compile(r"^/[A-Za-z0-9._~%/:@=+-]*(\?[A-Za-z0-9._~%/:@=+-]*)?$")
_ABS_DIR = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_DURATION = re.compile(r"^(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?$")

MAX_HOST_LENGTH = 253
MAX_DURATION_SECONDS = 86400
"""The longest duration a value may give (24h; ``0`` already means no limit). scripts/wait_for.sh
refuses a longer timeout with the same number: grammar and script agree (tests/test_scripts.py)."""


def parse_host(text: str) -> str:
    """A DNS name (RFC 1123, at most 253 characters) or an IPv4/IPv6 address."""
    if not text:
        raise ValueError("expected a host name or IP address, got an empty string")
    if "%" in text:
        raise ValueError("IPv6 zone identifiers (%...) are not allowed")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    if len(name) > MAX_HOST_LENGTH or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError("expected a DNS name (letters, digits, '-' and '.') or an IP address")
    return text.lower()


def parse_port(text: str) -> int:
    """A TCP port, 1-65535, written in plain decimal digits."""
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) < 1 or int(text) > 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return int(text)


def parse_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port``."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError("expected [IPv6-address]:port")
        host_text, port_text = text[1:end], text[end + 2 :]
        if "%" in host_text:
            raise ValueError("IPv6 zone identifiers (%...) are not allowed")
        try:
            host = str(ipaddress.IPv6Address(host_text))
        except ValueError as error:
            raise ValueError("expected an IPv6 address inside [ ]") from error
        return host, parse_port(port_text)
    host_text, sep, port_text = text.rpartition(":")
    if not sep or not host_text:
        raise ValueError("expected host:port")
    if ":" in host_text:
        raise ValueError("an IPv6 address must be written in brackets: [::1]:port")
    return parse_host(host_text), parse_port(port_text)


def parse_bracketed_ipv6(text: str) -> str:
    """``[ipv6]`` without a port (an http URL's authority)."""
    if not (text.startswith("[") and text.endswith("]")) or "%" in text:
        raise ValueError("expected [IPv6-address] or [IPv6-address]:port")
    try:
        return str(ipaddress.IPv6Address(text[1:-1]))
    except ValueError as error:
        raise ValueError("expected an IPv6 address inside [ ]") from error


def format_host_port(host: str, port: int) -> str:
    """The inverse of parse_host_port (brackets IPv6 addresses)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_url_path(text: str) -> str:
    """An absolute URL path with an optional query, from a conservative character set."""
    # A `..` segment followed by `/`, by the query's `?` (`/a/..?x=1`) or by nothing is refused.
    if len(text) > 512 or not _SAFE_URL_PATH.fullmatch(text) or "/../" in text + "/" or "/..?" in text + "?":
        raise ValueError("expected an absolute URL path such as /healthz (letters, digits and ._~%/:@=+-)")
    return text


def parse_directory(text: str) -> str:
    """An absolute, clean directory path: no '..', '.', '//', trailing '/' or special characters."""
    if len(text) > 255 or not _ABS_DIR.fullmatch(text):
        raise ValueError("expected an absolute directory such as /var/log/app (letters, digits and ._-)")
    parts = text.split("/")[1:]
    if any(part in (".", "..") for part in parts):
        raise ValueError("expected a clean absolute directory without '.' or '..' components")
    return text


SYSTEM_DIRECTORIES: dict[str, str] = {
    "/bin": "programs",
    "/sbin": "programs",
    "/usr": "programs and libraries",
    "/lib": "shared libraries",
    "/etc": "configuration (and the kubelet's hosts and resolv.conf)",
    "/boot": "the kernel",
    "/proc": "the kernel's process filesystem",
    "/sys": "the kernel's device filesystem",
    "/dev": "device files",
    "/run": "runtime state: sockets, locks, mounted secrets",
    "/var/run": "runtime state and the service-account token (/var/run/secrets)",
}
"""Directories a log volume is never mounted at or under, with what it would hide in the app
container. ``/lib`` stands for ``/lib32``, ``/lib64`` and ``/libx32`` too."""

ONLY_AS_PARENTS: dict[str, str] = {"/": "the whole filesystem", "/var": "/var/lib, /var/run, /var/cache and more"}
"""Directories that may hold log directories but are not one themselves."""

_LIB = re.compile(r"/lib(32|64|x32)?")
_OWN_DIRECTORY = "a log volume is never mounted there; use a directory of its own such as /var/log/app"


def parse_log_directory(text: str) -> str:
    """A directory to share with the logging agent: ``parse_directory`` after dropping trailing
    '/' (``/var/log/app/`` is ``/var/log/app``), and never a system directory."""
    path = text.rstrip("/") or "/"
    if path in ONLY_AS_PARENTS:
        raise ValueError(f"{path} holds {ONLY_AS_PARENTS[path]}: {_OWN_DIRECTORY}")
    path = parse_directory(path)
    top = "/" + path.split("/")[1]
    system = top if _LIB.fullmatch(top) else next((d for d in SYSTEM_DIRECTORIES if path == d or path.startswith(d + "/")), None)
    if system is not None:
        what = SYSTEM_DIRECTORIES["/lib" if _LIB.fullmatch(system) else system]
        where = path if path == system else f"{path} is under {system}, which"
        raise ValueError(f"{where} holds {what}: {_OWN_DIRECTORY}")
    return path


def normalise_path(text: str) -> str:
    """A mount path as the container runtime resolves it (``/var/log/app/`` and ``/var//log/./app``
    are ``/var/log/app``), so that a path is compared with the pod's mounts by meaning."""
    if text.startswith("/") and not text.endswith("/") and "//" not in text and "/." not in text:
        return text  # already clean, as nearly every mount path is: normpath costs about 1.5 µs
    return "/" + posixpath.normpath("/" + text).lstrip("/")


def parse_duration(text: str) -> int:
    """``90s``, ``5m``, ``1h30m``, ``0`` → seconds (0 means forever)."""
    if text == "0":
        return 0
    match = _DURATION.fullmatch(text) if text and len(text) <= 16 else None
    if match is None or not any(match.groupdict().values()):
        raise ValueError("expected a duration such as 90s, 5m, 1h30m, or 0 for no limit")
    hours, minutes, seconds = (int(match[unit] or 0) for unit in ("h", "m", "s"))
    total = hours * 3600 + minutes * 60 + seconds
    if total > MAX_DURATION_SECONDS:
        raise ValueError(f"at most 24h ({MAX_DURATION_SECONDS}s); 0 means no limit")
    return total


def parse_bool(text: str) -> bool:
    """Exactly ``"true"`` or ``"false"``: annotations are strings and guessing hides typos."""
    if text not in ("true", "false"):
        raise ValueError('expected "true" or "false"')
    return text == "true"


def parse_dns_label(text: str) -> str:
    """A DNS-1123 label: lower-case letters, digits and '-', at most 63 characters."""
    if not DNS_LABEL.fullmatch(text):
        raise ValueError("expected a DNS-1123 label (lower-case letters, digits and '-', at most 63)")
    return text


_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def is_object_name(text: object, *, prefix: bool = False) -> bool:
    """A Kubernetes object name (a DNS subdomain, at most 253 characters); ``prefix``: a
    ``generateName``, which may end in ``-``. Only such names go into logs, metrics and Events."""
    if not isinstance(text, str) or not 0 < len(text) <= 253:
        return False
    return _OBJECT_NAME.fullmatch(text[:-1] if prefix and text.endswith("-") and len(text) > 1 else text) is not None


def split_list(text: str) -> list[str]:
    """Comma-separated items; surrounding blanks around commas are tolerated, empty items are not."""
    items = [item.strip(" ") for item in text.split(",")]
    if any(not item for item in items):
        raise ValueError("expected a comma-separated list without empty items")
    return items
