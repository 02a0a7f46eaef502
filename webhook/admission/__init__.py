"""The AdmissionReview protocol: decoding a review (in part), deciding on it, reusing answers.

Depends on the engine only; knows nothing of HTTP servers or the cluster.
"""
