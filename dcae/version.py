"""The version of dcae."""

__version__ = "0.1.0"
