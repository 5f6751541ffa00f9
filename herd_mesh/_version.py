"""The package version, in one place (the wheel reads it too)."""

__version__ = "0.1.0"
