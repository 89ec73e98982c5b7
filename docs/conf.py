"""Sphinx configuration for the dcae documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "dcae"
author = "dcae developers"
copyright = "2026, dcae developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
html_static_path = ["_static"]
exclude_patterns = ["_build"]
nitpicky = False
