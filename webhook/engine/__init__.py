"""The pure injection engine: settings, grammars, annotations, profiles, inject, patch. No I/O.

Nothing here imports the other layers, a web framework or the Kubernetes client
(tests/test_layers.py holds that); the webhook and ``entourage inject`` both call ``inject_pod``.
"""
