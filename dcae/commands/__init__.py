"""Subcommands of the ``dcae`` command line (one module per command)."""
