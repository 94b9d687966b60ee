"""Sphinx configuration (MyST Markdown pages, autodoc for the reference)."""

from __future__ import annotations

import importlib.metadata

project = "paradigm-trio"
author = "paradigm-trio developers"
copyright = "2026, paradigm-trio developers"
release = importlib.metadata.version("paradigm-trio")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
templates_path: list[str] = []
html_theme = "furo"
html_static_path = ["_static"]
html_title = "paradigm-trio"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
# Types only for documented parameters: the constructors of BatchStream and ChatStream
# (made by the client, never by users) then show no list of internal parameters.
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

nitpicky = False


# The build runs offline (no intersphinx), so references into the standard library and
# into trio/httpx2 cannot resolve; ignore exactly those, and nothing of our own.
nitpick_ignore_regex = [
    ("py:class", r"(collections\.abc|contextlib|enum|os|ssl|types|typing|trio|httpx2)\..*"),
    # SyncClient's thread, and its DataFrames and arrays (optional extras).
    ("py:class", r"(threading|pandas|numpy)\..*"),
    ("py:exc", r"httpx2\..*"),
    # The types of the network arguments (proxy=, verify=, cert=) are aliases in private
    # modules; each argument's description says what it takes.
    ("py:class", r"ProxyTypes|VerifyTypes|CertTypes|EncodingFormat"),
]
