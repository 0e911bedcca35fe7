"""``resource_dict``: parsed once into a frozen value, checked by type and by what the executor can honour.

Pure functions only. Every rejection is a :class:`ResourceDictError` naming the key, the value, the rule and
the fix; an unknown key's is a ``pydantic.ValidationError`` with that message where pydantic is installed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from executorlib.errors import ResourceDictError, ResourceKeyWarning, unknown_key_error


@dataclass(frozen=True, slots=True)
class Resources:
    """What one task (or, with block allocation, every worker) asks for. Field names are the resource_dict keys;
    each executor rejects, naming the fix, the keys it cannot honour.

    Args:
        cores: MPI ranks of the call, the function running on each; the call's value is the list of every
            rank's value, in rank order. More than 1 needs mpi4py (``executorlib[mpi]``) and an MPI launcher.
            Default 1.
        threads_per_core: CPUs for each rank; a call occupies ``cores`` x ``threads_per_core`` of the core budget
            (locally ``OMP_NUM_THREADS`` and the BLAS thread variables, srun ``--cpus-per-task``, flux cores per
            task). Default 1.
        gpus_per_core: GPUs for each rank (srun ``--gpus-per-task``, flux GPUs per task; locally the visible GPUs
            are split among the workers). Default 0.
        cwd: Working directory the function runs in. None (default): the executor's default.
        cache_key: The name of the call's cache files (``<cache_key>_o.h5``) instead of the hash of the function
            and its arguments; a later call with the same key gets the stored result. It must stay inside the
            cache directory. None (default): the hash.
        cache_directory: The cache directory of this call, instead of the executor's. None (default): the
            executor's.
        num_nodes: Nodes to spread the ranks over (SLURM ``--nodes``, flux nodes, the job script). None (default):
            as the resource manager places them.
        exclusive: True: whole nodes for the call (SLURM ``--exclusive``, flux exclusive nodes). Default False.
        error_log_file: A file the traceback of a failing call is appended to. None (default): none.
        run_time_max: Seconds the call may run; then it is stopped and its Future fails (locally with
            ``TimeoutError``; srun ``--time``, flux duration, the job script's time limit). None (default): no limit.
        priority: The job's priority in the queue (flux urgency 0-31, the job script's variable). None (default):
            the queue's default.
        slurm_cmd_args: Extra ``srun`` arguments of SlurmJobExecutor, as given. Default none.
        submission_template: A jinja2 job script template for the cluster executors, pysqa's variable names
            (needs ``executorlib[cluster]``). None (default): the built-in template.
    """

    cores: int = 1
    threads_per_core: int = 1
    gpus_per_core: int = 0
    cwd: str | None = None
    cache_key: str | None = None
    cache_directory: str | None = None
    num_nodes: int | None = None
    exclusive: bool = False
    error_log_file: str | None = None
    run_time_max: int | None = None
    priority: int | None = None
    slurm_cmd_args: tuple[str, ...] = ()
    submission_template: str | None = None

    @property
    def cpus(self) -> int:
        """CPUs this request occupies: one per thread of every MPI rank."""
        return self.cores * self.threads_per_core


DEFAULTS = Resources()
KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Resources))


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an int"
    return None if value >= 1 else "must be at least 1"


def _non_negative_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an int"
    return None if value >= 0 else "must be 0 or more"


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else check(value)


def _path(value: Any) -> str | None:
    return None if isinstance(value, str | os.PathLike) else "must be a path (str or os.PathLike)"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty str"


def _cache_key(value: Any) -> str | None:
    from xl_cache import check_key

    if not isinstance(value, str) or not value:
        return "must be a non-empty str"
    try:
        check_key(value)
    except ValueError as problem:  # names the rule: a relative path that stays inside the cache directory
        return f"is not a valid cache key ({problem})"
    return None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be True or False"


def _int(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "must be an int"


def _str_list(value: Any) -> str | None:
    ok = isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)
    return None if ok else "must be a list of str"


_RULES: dict[str, tuple[Callable[[Any], str | None], str]] = {
    "cores": (_positive_int, 'the number of MPI ranks, e.g. {"cores": 2}'),
    "threads_per_core": (_positive_int, 'threads per rank, e.g. {"threads_per_core": 4}'),
    "gpus_per_core": (_non_negative_int, 'GPUs per rank, e.g. {"gpus_per_core": 1}'),
    "cwd": (_optional(_path), 'the working directory, e.g. {"cwd": "/scratch/run1"}'),
    "cache_key": (_optional(_cache_key), 'a key, "/" making sub-folders, e.g. {"cache_key": "runs/r4"}'),
    "cache_directory": (_optional(_path), 'a directory, e.g. {"cache_directory": "./cache"}'),
    "num_nodes": (_optional(_positive_int), 'the number of nodes, e.g. {"num_nodes": 2}'),
    "exclusive": (_bool, 'e.g. {"exclusive": True}'),
    "error_log_file": (_optional(_path), 'a file to append tracebacks to, e.g. {"error_log_file": "errors.txt"}'),
    "run_time_max": (_optional(_positive_int), 'seconds, e.g. {"run_time_max": 3600}'),
    "priority": (_optional(_int), 'e.g. {"priority": 10}'),
    "slurm_cmd_args": (_str_list, 'e.g. {"slurm_cmd_args": ["--mem=4G"]}'),
    "submission_template": (_optional(_text), "the text of a job script template"),
}

#: Keys that are constructor arguments rather than per-task resources, with where they belong.
_MOVED = {
    "openmpi_oversubscribe": "it is a constructor argument: SingleNodeExecutor(openmpi_oversubscribe=True)",
    "max_cores": "it is a constructor argument: SingleNodeExecutor(max_cores=...)",
    "max_workers": "it is a constructor argument: SingleNodeExecutor(max_workers=...)",
}


def parse_resource_dict(resource_dict: Mapping[str, Any] | None, *, where: str) -> dict[str, Any]:
    """Check keys and value types; return the given entries normalised (paths to str, lists to tuples).

    ``where`` names the call site in messages, e.g. "SingleNodeExecutor(resource_dict=...)".
    """
    if resource_dict is None:
        return {}
    if not isinstance(resource_dict, Mapping):
        raise ResourceDictError(
            f"{where}: resource_dict must be a dict, got {type(resource_dict).__name__} {resource_dict!r}; "
            'pass e.g. resource_dict={"cores": 1}'
        )
    parsed: dict[str, Any] = {}
    for key, value in resource_dict.items():
        if key in _MOVED:  # unknown to 1.x's resource model too, hence also a ValidationError with pydantic
            moved = f"{where}: resource_dict key {key!r} = {value!r} is not a resource: {_MOVED[key]}"
            raise unknown_key_error(ResourceDictError(moved), key, value)
        if key not in _RULES:
            error = unknown_key(
                key, value, KEYS, where=where, rule="is not known", fix=f"Valid keys are: {', '.join(KEYS)}."
            )
            raise unknown_key_error(error, key, value)
        check, example = _RULES[key]
        problem = check(value)
        if problem is not None:
            raise ResourceDictError(
                f"{where}: resource_dict[{key!r}] = {value!r} is invalid: {key} {problem}; {example}."
            )
        parsed[key] = _normalise(value)
    return parsed


def unknown_key(
    key: Any, value: Any, candidates: Collection[str], *, where: str, rule: str, fix: str
) -> ResourceDictError:
    """The error for a key nobody reads: the key, its value, the rule it breaks, the closest valid key (a
    misspelling is the usual cause) and the fix."""
    close = difflib.get_close_matches(str(key), sorted(candidates), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ResourceDictError(f"{where}: resource_dict key {key!r} (value {value!r}) {rule}.{hint} {fix}")


#: Keys the file-mode executors read by name besides the Resources fields: job script settings (pysqa's names).
QUEUE_KEYS: tuple[str, ...] = ("job_name", "memory_max", "partition", "queue")


def check_template_keys(
    extras: Mapping[str, Any], variables: Collection[str] | None, *, where: str, template: str
) -> None:
    """In file mode a key that is no resource is handed to the job script; one that is neither a queue key nor a
    variable of the ``template`` in use (``variables``; None: unknown, nothing to check) would vanish unseen, so it
    is named in a :class:`~executorlib.errors.ResourceKeyWarning` (executorlib 1.x warns too, and passes it on),
    with the closest valid key."""
    if variables is None:
        return
    unknown = [key for key in extras if key not in QUEUE_KEYS and key not in variables]
    if unknown:
        message = unknown_keys_message(unknown, variables, where=where, template=template)
        warnings.warn(message, ResourceKeyWarning, stacklevel=user_stacklevel())


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning name the user's line (the first caller outside executorlib), for a
    ``warnings.warn`` in the function that calls this one."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith("executorlib"):
        frame = frame.f_back
        level += 1
    return level


def unknown_keys_message(unknown: Sequence[Any], variables: Collection[str], *, where: str, template: str) -> str:
    """executorlib 1.x's warning text, then per key the closest valid one and the fix (pure).

    >>> print(unknown_keys_message(["core"], [], where="submit()", template="the default job script")[:114])
    submit(): The following keys are not recognized and cannot be validated: ['core'] (neither an executorlib resource
    """
    known = (*KEYS, *QUEUE_KEYS)
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), sorted({*known, *variables}), n=1)
        if close:
            hints.append(f"Did you mean {close[0]!r}?" if len(unknown) == 1 else f"{key!r}: did you mean {close[0]!r}?")
    return (
        f"{where}: The following keys are not recognized and cannot be validated: {list(unknown)} (neither an "
        f"executorlib resource nor a variable of {template}; they are passed to the job script as they are). "
        f"{' '.join(hints)} Fix the spelling (resources: {', '.join(known)}; template variables: "
        f"{', '.join(sorted(variables)) or 'none'}), or use them in a submission_template ({{{{ name }}}})."
    ).replace(").  Fix", "). Fix")


def _normalise(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def merge(base: Resources, overrides: Mapping[str, Any]) -> Resources:
    """``base`` with the parsed per-task ``overrides`` applied key by key."""
    return dataclasses.replace(base, **overrides) if overrides else base


@dataclass(frozen=True, slots=True)
class ExecutorRules:
    """What an executor honours: for each key it cannot honour, the reason and the fix (shown to the user)."""

    executor: str
    unsupported: Mapping[str, str]

    def check(self, resources: Resources, *, where: str) -> None:
        """Reject any non-default value of a key this executor cannot honour."""
        for key, reason in self.unsupported.items():
            value = getattr(resources, key)
            if value != getattr(DEFAULTS, key):
                shown = list(value) if isinstance(value, tuple) else value  # as the user wrote it
                raise ResourceDictError(
                    f"{where}: resource_dict[{key!r}] = {shown!r} is not supported by {self.executor}: {reason}"
                )
