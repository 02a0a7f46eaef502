"""Reliability runs against the real ``entourage serve``: soak, burst, faults under load, fuzzing.

``python -m soak`` (``make soak``) runs everything, bounded in time, on 127.0.0.1 only, and prints
its figures; ``tests/test_reliability.py`` runs short versions of the same code in ``make test``.

- ``mix``      the realistic AdmissionReviews, each with its expected answer (the oracle)
- ``client``   asyncio + TLS keep-alive clients that check every answer
- ``procs``    resident memory and open file descriptors of a process, from /proc
- ``runs``     the soak and the burst
- ``faults``   each fault injected under load
- ``fuzz``     hypothesis, a seed-corpus mutator and atheris against the in-process ASGI app,
               a sample against the real TLS server, schemathesis against the documented routes
- ``corpus``   the committed seed corpus (tests/fuzz_corpus/)
"""
