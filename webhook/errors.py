"""The error hierarchy: what can go wrong, and which channel answers it.

    EntourageError
    ├── ReviewError      the HTTP request is not a usable AdmissionReview → HTTP 400
    ├── PodDenied        the pod asks for something invalid → allowed: false, status.code 400
    ├── ConfigError      the configuration file or a profile in it is invalid → refuse to load
    └── PatchError       the engine produced a change it must never make (a bug) → onError policy

Every message names what was wrong (the key or field), the value, and what was expected.
"""

from __future__ import annotations


class EntourageError(Exception):
    """Base of every error Entourage raises on purpose."""


class ReviewError(EntourageError):
    """The request body is not an AdmissionReview we can answer (a client error, never a 5xx)."""


class PodDenied(EntourageError):
    """The pod cannot be admitted as it is; ``problems`` lists every reason, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ConfigError(EntourageError):
    """The configuration cannot be used; the message names the setting and the value."""


class PatchError(EntourageError):
    """The mutated pod differs from the original by more than additions (an engine bug)."""
