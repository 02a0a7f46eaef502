"""The configuration file, from start to every change: never a crash loop, never a bad configuration served.

A ConfigMap volume is updated by swapping the ``..data`` symlink, which inotify on the file path
does not see reliably; reading and hashing a small file every couple of seconds always does.

What happens to an invalid file (``ConfigWatch``):

- on a change while serving: refused and logged once; the configuration in use stays;
- at start, with a last valid configuration (``--last-good-config PATH``: a copy of every valid
  file this process loaded, written atomically; the chart keeps it in the pod's ``emptyDir``,
  so it survives a container restart but not a new pod): that copy is served, ready, and the
  reason is logged and shown by ``/readyz``;
- at start, without one: the process stays up and unready (``/readyz`` answers 503 with the
  error); ``/mutate`` and ``/validate`` answer 503 with a ``Status`` naming it, which the API
  server treats as a failed call, applying the webhook's ``failurePolicy`` as it does when no
  replica is reachable (the configuration's own ``onError`` is unknown: it is in the invalid
  file). A crash loop would say less and recover later: a restarted container waits out its
  back-off, where this process applies the file the moment it becomes valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from webhook import metrics
from webhook.engine.settings import Settings, parse_settings
from webhook.errors import ConfigError

log = logging.getLogger("entourage.reload")


class ConfigWatch:
    """Calls ``apply(settings)`` after the file at ``path`` changed to a valid configuration,
    keeping a copy of each valid one at ``last_good`` when given."""

    def __init__(self, path: str, apply: Callable[[Settings], None], *, last_good: str | None = None) -> None:
        self.path, self.apply, self.last_good = path, apply, last_good
        self.seen: str | None = None
        """sha256 of the content last looked at (valid or not); None: no file."""

    def start(self) -> tuple[Settings | None, str | None]:
        """The configuration to start with, and the problem with the file (None when it is valid
        and served): the file's, else the last valid copy, else (None, why)."""
        try:
            content = Path(self.path).read_bytes()
        except OSError as error:
            problem = f"{self.path}: cannot read the configuration file: {error.strerror}"
        else:
            self.seen = hashlib.sha256(content).hexdigest()
            try:
                settings = parse_settings(content.decode("utf-8", errors="replace"), source=self.path)
            except ConfigError as error:
                problem = str(error)
            else:
                metrics.CONFIG_VALID.set(1)
                self._keep(content)
                return settings, None
        metrics.CONFIG_VALID.set(0)
        metrics.CONFIG_RELOAD_FAILURES.inc()
        kept = self._last_good()
        fields = {"path": self.path, "error": problem, "last_good": self.last_good}
        if kept is not None:
            log.error("the configuration file is invalid; serving the last valid configuration", extra={"fields": fields})
            return kept, f"serving the last valid configuration ({self.last_good}) because {problem}"
        log.error(
            "the configuration file is invalid and there is no last valid configuration; unready until the file is valid",
            extra={"fields": fields},
        )
        return None, problem

    def check(self) -> bool:
        """Look once; True when a new configuration was applied. Never raises for a bad file."""
        try:
            content = Path(self.path).read_bytes()
        except OSError as error:
            if self.seen is not None:
                self.seen = None
                metrics.CONFIG_VALID.set(0)
                metrics.CONFIG_RELOAD_FAILURES.inc()
                log.error(
                    "the configuration file is gone; keeping the current configuration",
                    extra={"fields": {"path": self.path, "error": error.strerror}},
                )
            return False
        digest = hashlib.sha256(content).hexdigest()
        if digest == self.seen:
            return False
        self.seen = digest  # a bad file is reported once, not at every poll
        try:
            settings = parse_settings(content.decode("utf-8", errors="replace"), source=self.path)
        except ConfigError as error:
            metrics.CONFIG_VALID.set(0)
            metrics.CONFIG_RELOAD_FAILURES.inc()
            log.error(
                "the new configuration is invalid; keeping the current one",
                extra={"fields": {"path": self.path, "error": str(error), "sha256": digest}},
            )
            return False
        self.apply(settings)
        self._keep(content)
        metrics.CONFIG_VALID.set(1)
        metrics.CONFIG_RELOADS.inc()
        log.info("configuration reloaded", extra={"fields": {"path": self.path, "sha256": digest}})
        return True

    def _last_good(self) -> Settings | None:
        """The kept copy when there is one and it is still valid (a new version may refuse it)."""
        if self.last_good is None:
            return None
        try:
            text = Path(self.last_good).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        try:
            return parse_settings(text, source=self.last_good)
        except ConfigError as error:
            log.error("the last valid configuration is not valid any more", extra={"fields": {"error": str(error)}})
            return None

    def _keep(self, content: bytes) -> None:
        """Write ``content`` to the last-good path, whole or not at all (several worker processes
        may write at once: each renames its own temporary file over it)."""
        if self.last_good is None:
            return
        target = Path(self.last_good)
        try:
            if target.is_file() and target.read_bytes() == content:
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(content)
                os.replace(temporary, target)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as error:
            log.warning(
                "cannot keep a copy of the valid configuration; a restart with an invalid file will be unready",
                extra={"fields": {"last_good": self.last_good, "error": str(error)}},
            )
