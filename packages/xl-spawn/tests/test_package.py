import subprocess
import sys

import xl_spawn


def test_public_names() -> None:
    assert set(xl_spawn.__all__) == {
        "describe_returncode",
        "python_module_argv",
        "thread_env",
        "prepend_path",
        "Spawner",
        "SubprocessSpawner",
    }
    for name in xl_spawn.__all__:
        assert getattr(xl_spawn, name) is not None
    assert xl_spawn.__version__


def test_imports_no_project_package_and_no_heavy_dependency() -> None:
    code = (
        "import sys, xl_spawn; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'xl_serial', 'xl_comm', 'xl_cache', 'xl_graph', 'executorlib', 'zmq', 'psutil'}); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
