"""Sphinx configuration of the executorlib documentation site (built by scripts/docs.sh)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "executorlib"
author = "executorlib developers"
copyright = "executorlib developers"

extensions = [
    "myst_nb",  # MyST markdown pages and notebooks, executed at build time
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the Google-style Args: sections of the docstrings
    "public_names",  # docs/_ext: `.. public-names:: MODULE` documents MODULE.__all__
]
html_theme = "furo"
html_title = "executorlib"
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}

# -- docstrings --------------------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"  # hints under the parameter texts, not a 20-parameter signature line
autodoc_typehints_format = "short"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True  # `refresh_rate=0.01`, not the evaluated object
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Every cross-reference to a public project name must resolve (nitpicky); a name of a private module resolves to
# its public re-export or shows as plain code (docs/_ext/public_names.py). Names of other libraries and of the
# standard library are not documented here (the build needs no network, so no intersphinx): let through.
nitpicky = True
project_packages = ("executorlib", "xl_serial", "xl_comm", "xl_spawn", "xl_cache", "xl_graph")
nitpick_ignore_regex = [
    (r"py:.*", rf"(?!(?:{'|'.join(project_packages)})\b).*"),
]

# -- notebooks ---------------------------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "force"  # every notebook runs at every build: the pages show what the code does today
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_timeout = 180  # seconds per cell
nb_execution_in_temp = True  # cache directories and job files land in a temporary directory, not in docs/
nb_execution_show_tb = True  # the traceback of a failing cell in the build log
nb_merge_streams = True

# Pages whose backend cannot run on this machine: scripts/docs.sh (like scripts/test.sh) exports the reason in
# XL_SLURM_UNAVAILABLE / XL_FLUX_UNAVAILABLE when scripts/slurm-cluster.sh or scripts/flux-setup.sh exit with 3.
# Those notebooks are not executed, and their page says why at the top; every other failure fails the build.
UNAVAILABLE = {
    "guide/slurm": ("SLURM", os.environ.get("XL_SLURM_UNAVAILABLE", "")),
    "guide/flux": ("Flux", os.environ.get("XL_FLUX_UNAVAILABLE", "")),
}
nb_execution_excludepatterns = [f"{page}.md" for page, (_, reason) in UNAVAILABLE.items() if reason]


def _mark_unexecuted(app: Sphinx, docname: str, source: list[str]) -> None:
    tool, reason = UNAVAILABLE.get(docname, ("", ""))
    if not reason:
        return
    notice = (
        f":::{{warning}}\nThis page was not executed in this build: {tool} cannot run on the machine that built it "
        f"({reason}). The code cells are shown without their output.\n:::\n\n"
    )
    text = source[0]
    # After the notebook's front matter, which must stay first.
    if text.startswith("---\n"):
        end = text.index("\n---\n", 4) + len("\n---\n")
        source[0] = text[:end] + "\n" + notice + text[end:]
    else:
        source[0] = notice + text


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", _mark_unexecuted)
    return {"parallel_read_safe": True}
