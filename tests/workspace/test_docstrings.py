"""Every constructor parameter of a public class is documented where an IDE shows it: in the class docstring's
Google-style ``Args:`` section.

The executors share most of their parameters (``ExecutorOptions``). Their entries are copies, and this test keeps
the copies equal: one text in every executor, or, for the parameters whose behaviour differs between the two
kinds of executor (workers fed over sockets, or task files run as jobs), one text per kind.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import pytest

SOCKET_EXECUTORS = ("SingleNodeExecutor", "SlurmJobExecutor", "FluxJobExecutor")
CLUSTER_EXECUTORS = ("TestClusterExecutor", "SlurmClusterExecutor", "FluxClusterExecutor")

# Shared parameters documented once per kind of executor, and why they cannot have one text for all six.
PER_KIND = {
    "max_workers": "file mode rejects it; a socket executor bounds its calls or sizes its pool with it",
    "max_cores": "file mode rejects it",
    "cache_directory": "file mode always has one (task files live there); socket executors cache only with it",
    "resource_dict": "file mode passes unknown keys to the job script template; socket executors reject them",
    "hostname_localhost": "file mode rejects it; batch-job workers default to the host name",
    "block_allocation": "TestClusterExecutor rejects it; cluster pools are batch jobs",
    "init_function": "the workers are processes in one kind, batch jobs in the other",
    "wait": "only the cluster executors leave jobs running at shutdown",
    "restart_limit": "the cluster executors do not take it",
    "openmpi_oversubscribe": "mpiexec, srun and flux each do something else with it",
}

_ENTRY = re.compile(r"^(\*{0,2}\w+)(?: \([^)]*\))?:(?: (.*))?$")


def public_classes() -> list[tuple[str, type]]:
    import executorlib
    import executorlib.api

    found: dict[str, type] = {}
    for module in (executorlib, executorlib.api):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type):
                found[f"{module.__name__}.{name}"] = value
    return sorted(found.items())


def own_init_parameters(cls: type) -> list[str]:
    """The ``__init__`` parameters of ``cls`` when a project class defines that ``__init__`` (classes that keep
    object's or an exception's ``__init__`` are not ours to document)."""
    owner = next(klass for klass in cls.__mro__ if "__init__" in vars(klass))
    if not owner.__module__.startswith("executorlib"):
        return []
    parameters = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    return [p.name for p in parameters if p.name != "self"]


def args_section(doc: str | None) -> dict[str, str]:
    """The entries of the ``Args:`` section of a Google-style docstring: name -> text (whitespace collapsed)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        return {}
    section_indent = len(lines[start]) - len(lines[start].lstrip())
    entries: dict[str, list[str]] = {}
    entry_indent: int | None = None
    current: list[str] | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= section_indent:
            break  # the next section or prose
        if entry_indent is None:
            entry_indent = indent
        match = _ENTRY.match(line.strip())
        if indent == entry_indent and match:
            current = entries.setdefault(match.group(1).lstrip("*"), [])
            current.append(match.group(2) or "")
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(" ".join(parts).split()) for name, parts in entries.items()}


def documented_classes() -> list[tuple[str, type]]:
    return [(name, cls) for name, cls in public_classes() if own_init_parameters(cls)]


def test_the_public_classes_with_parameters_are_found() -> None:
    names = {name.rsplit(".", 1)[1] for name, _ in documented_classes()}
    assert {*SOCKET_EXECUTORS, *CLUSTER_EXECUTORS, "BaseExecutor", "SocketInterface", "Resources"} <= names


@pytest.mark.parametrize(("name", "cls"), documented_classes(), ids=[name for name, _ in documented_classes()])
def test_every_constructor_parameter_is_in_the_class_docstring(name: str, cls: type) -> None:
    documented = args_section(cls.__doc__)
    missing = [p for p in own_init_parameters(cls) if p not in documented]
    assert not missing, (
        f"{name}: constructor parameter(s) {', '.join(missing)} missing from the Args: section of the class "
        "docstring; add an entry 'name: meaning, default, constraints' for each"
    )
    empty = [p for p in own_init_parameters(cls) if not documented[p]]
    assert not empty, f"{name}: Args: entries without text: {', '.join(empty)}"


def executor_entries() -> dict[str, dict[str, str]]:
    import executorlib
    import executorlib.api

    classes = {name: getattr(executorlib, name, None) or getattr(executorlib.api, name) for name in SOCKET_EXECUTORS}
    classes |= {name: getattr(executorlib, name, None) or getattr(executorlib.api, name) for name in CLUSTER_EXECUTORS}
    return {name: args_section(cls.__doc__) for name, cls in classes.items()}


def shared_parameter_names() -> list[str]:
    from executorlib.executors.options import ExecutorOptions

    return [field.name for field in dataclasses.fields(ExecutorOptions)]


@pytest.mark.parametrize("parameter", shared_parameter_names())
def test_a_shared_parameter_has_one_text(parameter: str) -> None:
    entries = executor_entries()
    every = (*SOCKET_EXECUTORS, *CLUSTER_EXECUTORS)
    groups = [SOCKET_EXECUTORS, CLUSTER_EXECUTORS] if parameter in PER_KIND else [every]
    for group in groups:
        texts: dict[str, list[str]] = {}
        for executor in group:
            if parameter in entries[executor]:
                texts.setdefault(entries[executor][parameter], []).append(executor)
        assert len(texts) <= 1, (
            f"the Args: entry of {parameter!r} differs between {' and '.join(' + '.join(v) for v in texts.values())}; "
            "a shared parameter has one text (copy it), or add it to PER_KIND with the reason it differs"
        )


def test_per_kind_names_are_shared_parameters() -> None:
    assert set(PER_KIND) <= set(shared_parameter_names())


def test_the_args_parser_reads_google_style() -> None:
    def sample() -> Any:
        """Prose.

        Args:
            first: One line.
            second (int): Two
                lines.
            **rest: Keywords.

        Returns:
            Nothing.
        """

    assert args_section(sample.__doc__) == {"first": "One line.", "second": "Two lines.", "rest": "Keywords."}
    assert args_section("No section.") == {}
