"""Configuration hot reload: poll the mounted file, apply a valid change, keep the old on a bad one.

A ConfigMap volume is updated by swapping the ``..data`` symlink, which inotify on the file path
does not see reliably; reading and hashing a small file every couple of seconds always does.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from webhook import metrics
from webhook.engine.settings import Settings, parse_settings
from webhook.errors import ConfigError

log = logging.getLogger("entourage.reload")


class ConfigWatch:
    """Calls ``apply(settings)`` after the file at ``path`` changed to a valid configuration."""

    def __init__(self, path: str, apply: Callable[[Settings], None]) -> None:
        self.path, self.apply = path, apply
        self.seen = self._digest()

    def _digest(self) -> str | None:
        try:
            return hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
        except OSError:
            return None

    def check(self) -> bool:
        """Look once; True when a new configuration was applied. Never raises for a bad file."""
        try:
            content = Path(self.path).read_bytes()
        except OSError as error:
            if self.seen is not None:
                self.seen = None
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
            metrics.CONFIG_RELOAD_FAILURES.inc()
            log.error(
                "the new configuration is invalid; keeping the current one",
                extra={"fields": {"path": self.path, "error": str(error), "sha256": digest}},
            )
            return False
        self.apply(settings)
        metrics.CONFIG_RELOADS.inc()
        log.info("configuration reloaded", extra={"fields": {"path": self.path, "sha256": digest}})
        return True
