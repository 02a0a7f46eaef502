"""Entourage: a mutating admission webhook that gives pods their companion containers."""

from webhook import compiled as compiled  # importing it puts the compiled build in front of the sources when it matches them

__version__ = "0.1.0"
