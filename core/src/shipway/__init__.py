"""shipway: from a commit and a model version to one verified image, and on to a running service."""

__version__ = "0.1.0"
