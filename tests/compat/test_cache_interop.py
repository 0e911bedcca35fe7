"""Cache interop with executorlib 1.11.0 (compat-1x.md §5.6), with files the released 1.11.0 writes at test time.

A session fixture makes a venv with ``executorlib==1.11.0`` and h5py (its ``cache`` extra) from the package
index, on this interpreter, so pickles of functions defined in a script travel both ways. Each direction runs
real executors: 1.11.0 fills a cache directory that ours lists, loads and hits, and ours fills one that 1.11.0
lists, loads and hits. The functions live in the scripts' ``__main__``, so both sides unpickle them by value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
import warnings
from pathlib import Path
from typing import Any

import pytest

V1_VERSION = "1.11.0"
V1_REQUIREMENTS = (f"executorlib=={V1_VERSION}", "h5py")
#: A ready venv with 1.11.0 and h5py is reused when it runs this Python minor version (a developer's scratch copy).
REUSABLE_V1 = Path("/tmp/v1/bin/python")
INSTALL_TIMEOUT = 600.0
SCRIPT_TIMEOUT = 120.0

_PROBE = "import sys, executorlib, h5py; print(executorlib.__version__, '%d.%d' % sys.version_info[:2])"


def _usable(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False)
    return probe.returncode == 0 and probe.stdout.split() == [V1_VERSION, "{}.{}".format(*sys.version_info[:2])]


@pytest.fixture(scope="session")
def v1_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a venv holding the released executorlib 1.11.0 and h5py."""
    if _usable(REUSABLE_V1):
        return REUSABLE_V1
    home = tmp_path_factory.mktemp("executorlib-1.11.0")
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    python = home / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *V1_REQUIREMENTS],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    if install.returncode != 0:
        reason = f"cannot make a venv with executorlib=={V1_VERSION} from the package index: {install.stderr[-800:]}"
        pytest.skip(reason)
    assert _usable(python), f"the venv at {home} does not import executorlib {V1_VERSION} and h5py"
    return python


def _run(python: Path | str, script: str, cwd: Path) -> Any:
    """Run ``script`` (dedented) with ``python`` in ``cwd``; return the JSON it prints last."""
    path = cwd / f"script_{abs(hash(script))}.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [str(python), str(path)], cwd=cwd, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{python} {path} failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# Written by 1.11.0: two interactive results (one with a user key), a file-mode result and a file-mode error,
# and a pending task file written with 1.11.0's own writer.
V1_WRITES = """
    import json, sys
    from executorlib import SingleNodeExecutor
    from executorlib.api import TestClusterExecutor
    from executorlib.standalone.hdf import dump

    def add(a, b):
        return a + b

    def shape(n):
        return {"n": n, "squares": [i * i for i in range(n)]}

    def refuse(x):
        raise ValueError(f"no {x}")

    cache = sys.argv[0].rsplit("/", 1)[0] + "/cache"
    with SingleNodeExecutor(cache_directory=cache) as exe:
        assert exe.submit(add, 1, 2).result() == 3
        assert exe.submit(shape, 3, resource_dict={"cache_key": "mine"}).result() == shape(3)
    with TestClusterExecutor(cache_directory=cache + "/files") as exe:
        good = exe.submit(add, 20, 22, resource_dict={"cache_key": "good"})
        bad = exe.submit(refuse, 5, resource_dict={"cache_key": "bad"})
        assert good.result() == 42
        try:
            bad.result()
        except ValueError:
            pass
    dump(cache + "/later_i.h5", {"fn": add, "args": (5, 6), "kwargs": {}, "resource_dict": {}})
    print(json.dumps("written"))
"""


def test_ours_reads_a_cache_written_by_1_11(v1_python: Path, tmp_path: Path) -> None:
    from executorlib import SingleNodeExecutor, get_cache_data, get_future_from_cache

    assert _run(v1_python, V1_WRITES, tmp_path) == "written"
    cache = tmp_path / "cache"

    # get_cache_data: every file, format 0 included, with 1.x's fields (runtime a float, the output unpickled)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no file is skipped as damaged
        records = {os.path.relpath(r["filename"], cache): r for r in get_cache_data(cache)}
    assert set(records) == {
        next(name for name in records if name.startswith("add") and name.endswith("_o.h5")),
        "mine_o.h5",
        "files/good_o.h5",
        "files/bad_o.h5",
        "later_i.h5",
    }
    assert records["mine_o.h5"]["output"] == {"n": 3, "squares": [0, 1, 4]}
    assert records["mine_o.h5"]["input_args"] == (3,) and records["mine_o.h5"]["status"] == "done"
    assert isinstance(records["mine_o.h5"]["runtime"], float)
    assert records["files/good_o.h5"]["output"] == 42 and records["files/good_o.h5"]["function"](1, 2) == 3
    assert isinstance(records["files/bad_o.h5"]["error"], ValueError) and records["files/bad_o.h5"]["status"] == "error"
    assert records["later_i.h5"]["status"] == "pending" and records["later_i.h5"]["input_args"] == (5, 6)

    # get_future_from_cache: a result, a stored error, a pending task
    assert get_future_from_cache(cache, "mine").result(timeout=0) == {"n": 3, "squares": [0, 1, 4]}
    assert get_future_from_cache(cache / "files", "good").result(timeout=0) == 42
    with pytest.raises(ValueError, match="no 5"):
        get_future_from_cache(cache / "files", "bad").result(timeout=0)
    assert not get_future_from_cache(cache, "later").done()  # queued: a Future not done yet, as in 1.x

    # a user-given cache_key hits the 1.x result: the function would return something else if it ran
    with SingleNodeExecutor(cache_directory=str(cache)) as exe:
        hit = exe.submit(len, [], resource_dict={"cache_key": "mine"})
        assert hit.result(timeout=60) == records["mine_o.h5"]["output"]

    # the command line lists them (not as damaged) and shows one
    listing = subprocess.run(
        [sys.executable, "-m", "xl_cache", "ls", str(cache), "--json"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    rows = {os.path.relpath(row["filename"], cache): row for row in json.loads(listing.stdout)}
    assert {row["status"] for row in rows.values()} == {"done", "error", "pending"}
    assert rows["mine_o.h5"]["format"] == 0 and rows["mine_o.h5"]["function"] == "shape"
    assert rows["files/bad_o.h5"]["function"] == "refuse" and rows["later_i.h5"]["function"] == "add"
    assert isinstance(rows["mine_o.h5"]["runtime"], float)
    show = subprocess.run(
        [sys.executable, "-m", "xl_cache", "show", str(cache), "mine"], capture_output=True, text=True, timeout=60
    )
    assert show.returncode == 0, show.stderr
    assert "'squares': [0, 1, 4]" in show.stdout and "damaged" not in show.stdout + show.stderr


# Written by ours: interactive results (one with a user key) and a file-mode result and error.
OURS_WRITES = """
    import json, sys
    from executorlib import SingleNodeExecutor
    from executorlib.api import TestClusterExecutor

    def add(a, b):
        return a + b

    def shape(n):
        return {"n": n, "squares": [i * i for i in range(n)]}

    def refuse(x):
        raise ValueError(f"no {x}")

    cache = sys.argv[0].rsplit("/", 1)[0] + "/cache"
    with SingleNodeExecutor(cache_directory=cache) as exe:
        assert exe.submit(add, 1, 2).result(timeout=60) == 3
        assert exe.submit(shape, 3, resource_dict={"cache_key": "mine"}).result(timeout=60) == shape(3)
    with TestClusterExecutor(cache_directory=cache + "/files") as exe:
        good = exe.submit(add, 20, 22, resource_dict={"cache_key": "good"})
        bad = exe.submit(refuse, 5, resource_dict={"cache_key": "bad"})
        assert good.result(timeout=60) == 42
        try:
            bad.result(timeout=60)
        except ValueError:
            pass
    print(json.dumps("written"))
"""

# Read by 1.11.0: its get_cache_data, get_future_from_cache and a cache hit of its SingleNodeExecutor.
V1_READS = """
    import json, os, sys
    from executorlib import SingleNodeExecutor, get_cache_data, get_future_from_cache

    cache = sys.argv[0].rsplit("/", 1)[0] + "/cache"
    records = {os.path.relpath(r["filename"], cache): r for r in get_cache_data(cache)}
    summary = {
        name: {
            "output": r.get("output"),
            "error": repr(r["error"]) if "error" in r else None,
            "runtime": type(r.get("runtime")).__name__,
            "input_args": list(r["input_args"]),
        }
        for name, r in records.items()
    }
    try:
        get_future_from_cache(cache + "/files", "bad")
        raised = None
    except ValueError as error:
        raised = repr(error)
    with SingleNodeExecutor(cache_directory=cache) as exe:
        hit = exe.submit(len, [], resource_dict={"cache_key": "mine"}).result()
    print(json.dumps({
        "records": summary,
        "mine": get_future_from_cache(cache, "mine").result(),
        "good": get_future_from_cache(cache + "/files", "good").result(),
        "raised": raised,
        "hit": hit,
    }))
"""


def test_1_11_reads_a_cache_written_by_ours(v1_python: Path, tmp_path: Path) -> None:
    assert _run(sys.executable, OURS_WRITES, tmp_path) == "written"
    seen = _run(v1_python, V1_READS, tmp_path)
    records = seen["records"]
    assert set(records) == {
        next(name for name in records if name.startswith("add")),
        "mine_o.h5",
        "files/good_o.h5",
        "files/bad_o.h5",
    }
    assert records["mine_o.h5"] == {
        "output": {"n": 3, "squares": [0, 1, 4]},
        "error": None,
        "runtime": "float",
        "input_args": [3],
    }
    assert records["files/good_o.h5"]["output"] == 42 and records["files/good_o.h5"]["runtime"] == "float"
    assert records["files/bad_o.h5"]["error"] == "ValueError('no 5')"
    assert seen["raised"] == "ValueError('no 5')"
    assert seen["mine"] == {"n": 3, "squares": [0, 1, 4]} and seen["good"] == 42
    assert seen["hit"] == {"n": 3, "squares": [0, 1, 4]}
