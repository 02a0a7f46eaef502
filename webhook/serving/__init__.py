"""The serving process: the HTTP endpoints, TLS, reloads, logs and metrics around ``admission``."""
