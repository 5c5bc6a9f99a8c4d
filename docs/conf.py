"""Sphinx configuration of fastdrop's documentation.

Build (from the repository root; warnings are errors)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The build imports fastdrop and its optional adapters (torch, dask, numba)
for the API reference, and runs every example in ``examples/`` for the
gallery (``docs/auto_examples/``, generated).  ``-D plot_gallery=0`` skips
running the examples.
"""

from __future__ import annotations

import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
try:
    import fastdrop
except ImportError:  # a checkout built in place (python setup.py build_ext --inplace)
    sys.path.insert(0, str(ROOT))
    import fastdrop

# Examples and autodoc must not open windows.
os.environ.setdefault("MPLBACKEND", "Agg")
# fastdrop.keras is documented on Keras's JAX backend (Keras picks it at import)
os.environ.setdefault("KERAS_BACKEND", "jax")

# -- project -------------------------------------------------------------------

project = "fastdrop"
author = "the fastdrop developers"
copyright = "the fastdrop developers"
release = fastdrop.__version__
version = ".".join(release.split(".")[:2])

# -- general -------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "fastdrop_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "_templates"]
templates_path = ["_templates"]
default_role = "code"          # `x` in reST is inline code, as in the Markdown pages
nitpicky = False

# -- autodoc, autosummary, numpydoc -------------------------------------------

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"      # the numpydoc sections describe the types
autodoc_preserve_defaults = True

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = False

# -- MyST (docs/spec.md, docs/benchmarking.md, docs/rng_quality.md) -----------

myst_heading_anchors = 3

# -- sphinx-gallery ------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"\.py$",                  # run every example
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "fastdrop_docs.GalleryOrder",
    "minigallery_sort_order": "fastdrop_docs.minigallery_order",
    "reset_argv": "fastdrop_docs.gallery_argv",
    # "Examples using ..." on the API pages (_templates/autosummary), and links
    # from the examples' code to the API reference
    "doc_module": ("fastdrop",),
    "backreferences_dir": "api/backreferences",
    "reference_url": {"fastdrop": None},
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 0,
    "capture_repr": (),                          # printed output only
    "write_computation_times": True,
}

# -- HTML ----------------------------------------------------------------------

html_theme = "furo"
html_title = f"fastdrop {release}"
html_theme_options = {"navigation_with_keys": True}
html_static_path = ["_static"]
html_css_files = ["fastdrop.css"]
html_show_sourcelink = False
