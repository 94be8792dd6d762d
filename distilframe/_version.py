"""The package version, in one place (read by the cache keys and result files, not from the package root)."""

__version__ = "0.1.0"
