"""``.. public-names:: MODULE``: the autodoc entries of every name in ``MODULE.__all__``.

The API reference is generated from ``__all__`` rather than from a list kept by hand, so a name added to a
package's public API appears in the reference at the next build, and a name without a docstring fails the build
(``scripts/docs.sh`` runs Sphinx with warnings as errors).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

LOGGER = logging.getLogger(__name__)


def autodoc_directive(value: Any) -> str:
    """The autodoc directive that documents ``value``."""
    if inspect.isclass(value):
        return "autoexception" if issubclass(value, BaseException) else "autoclass"
    if inspect.isroutine(value):
        return "autofunction"
    return "autodata"


def entry_lines(module_name: str, name: str, value: Any) -> list[str]:
    """The reST lines of one public name: its directive, with its members for a class."""
    directive = autodoc_directive(value)
    lines = [f".. {directive}:: {module_name}.{name}"]
    if directive in ("autoclass", "autoexception"):
        lines.append("   :members:")
        lines.append("   :show-inheritance:")
    if directive == "autodata":
        lines.append("   :annotation:")
    return [*lines, ""]


class PublicNames(SphinxDirective):
    """Every name of a module's ``__all__``, documented from its docstring, in ``__all__``'s order."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        names = list(getattr(module, "__all__", []))
        if not names:
            LOGGER.warning("public-names: %s has no __all__", module_name, location=self.get_location())
        lines: list[str] = []
        for name in names:
            lines += entry_lines(module_name, name, getattr(module, name))
        content = StringList(lines, source=f"<public-names {module_name}>")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, content, container)
        return list(container.children)


def is_submodule(name: str) -> bool:
    """Whether ``name`` (``xl_cache.tasks``) is an importable module of a project package."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def public_candidates(target: str) -> list[str]:
    """Where a name of a private module is documented: ``xl_graph.graph.TaskGraph.to_networkx`` is re-exported as
    ``xl_graph.TaskGraph.to_networkx``, ``executorlib.resources.Resources`` as ``executorlib.api.Resources``."""
    root, *rest = target.split(".")
    found = []
    for start in range(1, len(rest)):
        tail = rest[start:]
        found += [".".join([root, *tail]), ".".join([root, "api", *tail])]
    return found


def resolve_private_path(
    app: Sphinx, env: BuildEnvironment, node: addnodes.pending_xref, contnode: nodes.TextElement
) -> nodes.Element | None:
    """A project reference that autodoc wrote with the defining module (type hints, base classes, docstrings that
    name a submodule) resolves to the public name that re-exports it. One into a private module that nothing
    re-exports is shown as plain code: only the public names are in the reference, and a reference to one of
    them that does not resolve still fails the build."""
    if node.get("refdomain") != "py":
        return None
    target = str(node.get("reftarget", ""))
    root, _, rest = target.partition(".")
    if root not in app.config.project_packages or not rest:
        return None
    domain = env.get_domain("py")
    for candidate in public_candidates(target):
        for role in (node["reftype"], "obj"):
            resolved = domain.resolve_xref(env, node["refdoc"], app.builder, role, candidate, node, contnode)
            if resolved is not None:
                return resolved
    private = f"{root}.{rest.split('.')[0]}"
    if private != "executorlib.api" and is_submodule(private):
        return contnode
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("project_packages", (), "env")
    app.add_directive("public-names", PublicNames)
    app.connect("missing-reference", resolve_private_path)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
