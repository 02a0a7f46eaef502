"""The performance harness: ``python -m bench`` drives ``entourage serve`` and a baseline with wrk.

One module per concept: ``payloads`` builds the AdmissionReviews the apiserver would send,
``baseline`` is the do-nothing ASGI app under the same uvicorn settings, ``verify`` checks one
answer of each kind before anything is timed, ``micro`` times the pure engine in-process and
``runner`` starts the servers, runs wrk and prints the table.
"""
