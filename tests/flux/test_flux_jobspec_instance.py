"""xl_spawn.flux_jobspec_dict against the real instance: flux accepts every golden jobspec and stores it as built.

Each golden request of packages/xl-spawn/tests/golden/flux is submitted held (urgency 0, so it never runs and a
request larger than the instance does not fail), read back with ``flux job info ID jobspec`` and cancelled. The
instance keeps the jobspec without its environment (it redacts it), so that part is compared in the xl-spawn
tests against the bindings' builders and reaches jobs in test_flux_spawner.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from xl_flux_helpers import REPO, FluxInstance
from xl_spawn import FluxRequest, flux_job_plan, flux_jobspec, flux_jobspec_dict

GOLDEN = REPO / "packages" / "xl-spawn" / "tests" / "golden" / "flux"
ENVIRON = {"PATH": "/usr/bin:/bin", "HOME": "/home/user", "LANG": "C.UTF-8"}


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("*.json"))


def test_the_golden_files_are_there() -> None:
    assert len(golden_files()) >= 6


@pytest.mark.parametrize("path", golden_files(), ids=lambda path: path.stem)
def test_flux_stores_the_jobspec_as_built(path: Path, flux_instance: FluxInstance) -> None:
    import flux
    import flux.job

    case = json.loads(path.read_text())
    request = FluxRequest(**case["request"])
    plan = flux_job_plan(request, case["command"], environ=ENVIRON, cwd="/scratch/job", nested=case["nested"])
    built = flux_jobspec_dict(plan)
    assert built == case["jobspec"]
    jobid = flux.job.submit(flux.Flux(), flux_jobspec(plan), urgency=0)  # held: it never runs
    try:
        info = flux_instance.run(["job", "info", str(jobid), "jobspec"], timeout=30).stdout
        stored: dict[str, Any] = json.loads(info)
        assert "environment" not in stored["attributes"]["system"]  # redacted by the instance, see above
        expected = json.loads(json.dumps(built))
        del expected["attributes"]["system"]["environment"]
        assert stored == expected
        urgency = flux_instance.run(["jobs", "-n", "-o", "{urgency}", str(jobid)], timeout=30).stdout.strip()
        assert urgency == "0"
    finally:
        flux_instance.run(["cancel", str(jobid)], timeout=30, check=False)
