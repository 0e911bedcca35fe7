"""The file-mode worker: ``python -m xl_cache.worker PATH/<key>_i.h5``.

It loads the pending task, replaces :class:`~xl_cache.OutputRef` arguments by the outputs they name, runs the
function in ``resource_dict["cwd"]`` when one is given, and writes ``<key>_o.h5`` next to the input (atomically)
with the output or the exception, the runtime and the queue id; then it removes the input.

Exit status, for batch schedulers (``afterok`` dependencies):

- 0: the output file was written, whether the function returned or raised. A dependent job then starts and
  fails with the same exception when it reads this output (executorlib 1.x semantics); the exception's
  traceback is also printed to stderr (the job's log) and appended to ``error_log_file`` when one is set.
- 1: no output file could be written (e.g. the directory is not writable); the reason is on stderr.
- 2: bad command line.

Under MPI (``srun -n N`` / ``mpiexec -n N python -m xl_cache.worker ...``) every rank runs the function, the ranks'
outcomes are gathered to rank 0 (mpi4py), and rank 0 writes the list of every rank's value in rank order (as the
interactive executors return it), or the lowest failing rank's exception, and removes the input. Rank and size
come from the launcher's environment (``PMI_RANK``/``PMI_SIZE``, ``OMPI_COMM_WORLD_*``, ``SLURM_PROCID``/
``SLURM_STEP_NUM_TASKS``, ...), so a one-process job never loads MPI. A queue id missing from the input (it is
recorded after submission, possibly after the job started) is taken from ``SLURM_JOB_ID`` or ``FLUX_JOB_ID``
(or ``XL_CACHE_QUEUE_ID``), else read, when the output is written, from the file ``XL_CACHE_QUEUE_ID_FILE`` names
(a launcher that learns the id only once the job runs, such as a local process's pid, writes it there); once the
output is written that file is removed, with the launcher's copy of the job's stderr beside it
(``STDERR_LOG_NAME``), and its folder too if nothing else is in it.

An unreadable input (damaged, or from other Python/cloudpickle versions) still produces an output file holding
that error, so whoever waits for the task learns why instead of waiting forever. An input someone else could have
written (:class:`~xl_cache.CacheTrustError`, see :func:`xl_cache.layout.trust_problem`) is never unpickled: the
output holds that error and the input is left where it is.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from xl_serial import error_report

from xl_cache.errors import CacheTrustError
from xl_cache.jobfiles import QUEUE_ID_FILE_VARIABLE, STDERR_LOG_NAME, read_queue_id_file
from xl_cache.layout import INPUTS, parse_name
from xl_cache.refs import resolve_refs
from xl_cache.store import check_versions, open_file, read_meta, read_pickled, unpack
from xl_cache.tasks import output_path, write_result_file

EXIT_OK = 0
EXIT_NO_OUTPUT = 1
EXIT_USAGE = 2

#: Where a batch job learns its own id (the input may not carry it yet: it is recorded after submission).
_JOB_ID_VARIABLES = ("SLURM_JOB_ID", "FLUX_JOB_ID", "XL_CACHE_QUEUE_ID")
#: The MPI rank and size as launchers export them; only rank 0 of an MPI task writes the output.
_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "FLUX_TASK_RANK")
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def combine_ranks(outcomes: Sequence[tuple[Any, BaseException | None]]) -> tuple[Any, BaseException | None]:
    """One outcome from every rank's ``(output, error)`` (pure): the list of outputs in rank order, or the
    lowest failing rank's exception, with the rank named in a note."""
    for rank, (_, error) in enumerate(outcomes):
        if error is not None:
            add_note = getattr(error, "add_note", None)  # Python 3.11+
            if add_note is not None:
                add_note(f"raised on MPI rank {rank} of {len(outcomes)}")
            return None, error
    return [output for output, _ in outcomes], None


def _gather(output: Any, error: BaseException | None) -> list[tuple[Any, BaseException | None]] | None:
    """Every rank's outcome on rank 0 (None on the others), pickled with cloudpickle through xl_serial, since
    the values may be lambdas or local classes that mpi4py's plain pickle refuses."""
    from mpi4py import MPI
    from xl_serial import dumps, loads

    try:
        mine = [bytes(memoryview(frame)) for frame in dumps((output, error))]
    except Exception as unpicklable:  # this rank's value cannot travel: its error does
        mine = [bytes(memoryview(frame)) for frame in dumps((None, TypeError(f"unpicklable result: {unpicklable!r}")))]
    gathered = MPI.COMM_WORLD.gather(mine, root=0)
    return None if gathered is None else [loads(frames) for frames in gathered]


def _env_int(names: Sequence[str]) -> int | None:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _queue_id_from_file() -> int | None:
    """The queue id a launcher recorded after the job started (its pid, say) in ``XL_CACHE_QUEUE_ID_FILE``."""
    return read_queue_id_file(os.environ.get(QUEUE_ID_FILE_VARIABLE))


def _log_error(error_log_file: str | None, fn: Any, args: Any, kwargs: Any, error: BaseException) -> None:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    print(text, file=sys.stderr, end="", flush=True)
    if error_log_file is None:
        return
    try:
        with open(error_log_file, "a", encoding="utf-8") as log:
            log.write(error_report(fn, args, kwargs, error))
    except OSError as problem:  # the log is a courtesy; the output file still gets the error
        print(f"xl_cache.worker: cannot append to error_log_file {error_log_file}: {problem}", file=sys.stderr)


def run_task_file(input_file: str | os.PathLike[str]) -> str:
    """Run the task of ``<key>_i.h5`` and write its ``<key>_o.h5``; return the output path.

    Exceptions of the task (and of loading it) are stored, not raised; only a failure to write the output
    raises.
    """
    input_file = os.path.abspath(input_file)
    parsed = parse_name(os.path.basename(input_file))
    if parsed is None or parsed[1] != "input":
        raise ValueError(f"{input_file} is not a pending task file (expected a name ending in _i.h5)")
    key = parsed[0]
    output_file = output_path(os.path.dirname(input_file), key)
    if not os.path.exists(input_file):
        if os.path.exists(output_file):
            return output_file  # ran already (a requeued job): keep that result
        raise FileNotFoundError(2, "No such pending task file", input_file)
    inputs: dict[str, bytes] = {}
    function, error_log_file, queue_id = key, None, None
    fn: Any = None
    args: Any = ()
    kwargs: Any = {}
    runtime = 0.0

    def store(output: Any, error: BaseException | None) -> None:
        write_result_file(
            output_file,
            key=key,
            function=function,
            inputs=inputs,
            output=output,
            error=error,
            runtime=runtime,
            error_log_file=error_log_file,
            queue_id=queue_id if queue_id is not None else _queue_id_from_file(),
        )

    try:
        with open_file(input_file) as reader:
            meta = read_meta(reader)
            function, error_log_file, queue_id = meta.function, meta.error_log_file, meta.queue_id
            if meta.key.endswith(f"/{key}"):  # a key with sub-folders: its name in the file is the whole key
                key = meta.key
            if queue_id is None:
                queue_id = _env_int(_JOB_ID_VARIABLES)
            inputs = {name: read_pickled(reader, meta, name) for name in INPUTS}
            check_versions(meta, input_file)
        fn, args, kwargs, resources = (unpack(inputs[name]) for name in INPUTS)
        cwd = resources.get("cwd")
        if cwd:
            os.makedirs(cwd, exist_ok=True)
            os.chdir(cwd)
        args, kwargs = resolve_refs(args), resolve_refs(kwargs)
    except Exception as problem:  # a damaged input, a missing module, a failed upstream: the task's error
        _log_error(error_log_file, fn, args, kwargs, problem)
        store(None, problem)
        if not isinstance(problem, CacheTrustError):  # someone else's file is not ours to delete
            _remove(input_file)
        _release_queue_id_file()
        return output_file
    start = time.perf_counter()
    error: BaseException | None
    try:
        output, error = fn(*args, **kwargs), None
    except Exception as raised:  # SystemExit/KeyboardInterrupt (sys.exit, a signal) end the job instead
        output, error = None, raised
    runtime = time.perf_counter() - start
    rank, size = _env_int(_RANK_VARIABLES) or 0, _env_int(_SIZE_VARIABLES) or 1
    if size > 1:
        outcomes = _gather(output, error)
        if outcomes is None:
            return output_file  # an MPI task: rank 0 stores the result (and the error) for all ranks
        output, error = combine_ranks(outcomes)
    elif rank != 0:
        return output_file
    if error is not None:
        _log_error(error_log_file, fn, args, kwargs, error)
    try:
        store(output, error)
    except Exception as unpicklable:  # the output (or exception) cannot be pickled: store why
        stored = TypeError(f"the result of {function} could not be stored in the cache: {unpicklable!r}")
        _log_error(error_log_file, fn, args, kwargs, stored)
        store(None, stored)
    _remove(input_file)
    _release_queue_id_file()
    return output_file


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _release_queue_id_file() -> None:
    """Once the output exists, the queue-id sidecar (and its folder, if that is all it held) has served: a job
    left running by an executor that is gone leaves only its output behind."""
    path = os.environ.get(QUEUE_ID_FILE_VARIABLE)
    if not path:
        return
    _remove(path)
    _remove(os.path.join(os.path.dirname(path), STDERR_LOG_NAME))  # its launcher's copy of our stderr, if any
    with contextlib.suppress(OSError):  # other files in it (a job script, a log) stay, and so does the folder
        os.rmdir(os.path.dirname(path))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xl_cache.worker",
        description="Run one pending task of an xl-cache directory and write its output file.",
    )
    parser.add_argument("input_file", help="the task's <key>_i.h5")
    args = parser.parse_args(argv)
    try:
        run_task_file(args.input_file)
    except ValueError as problem:
        print(f"xl_cache.worker: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as problem:
        print(f"xl_cache.worker: no output written for {args.input_file}: {problem!r}", file=sys.stderr)
        return EXIT_NO_OUTPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
