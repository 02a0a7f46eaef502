"""Everything that talks to a Kubernetes API: the only package that imports ``kubernetes``."""
