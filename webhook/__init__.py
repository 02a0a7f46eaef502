"""Entourage: a mutating admission webhook that gives pods their companion containers."""

__version__ = "0.1.0"
