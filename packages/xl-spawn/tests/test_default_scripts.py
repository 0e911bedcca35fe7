"""The built-in job scripts render without jinja2, and say exactly what their jinja2 templates (the public
``DEFAULT_SLURM_TEMPLATE``/``DEFAULT_FLUX_TEMPLATE``, a start for users' own) say."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xl_spawn.flux_batch import DEFAULT_FLUX_TEMPLATE, DEFAULT_FLUX_VARIABLES, default_flux_script
from xl_spawn.sbatch import DEFAULT_SLURM_TEMPLATE, DEFAULT_SLURM_VARIABLES, default_slurm_script

maybe = st.one_of(st.none(), st.just(0), st.integers(1, 9))
word = st.text("abcxyz-_/.0123", min_size=1, max_size=12)
ids = st.lists(st.integers(1, 10**9).map(str), max_size=3)

slurm_variables = st.fixed_dictionaries(
    {
        "job_name": word,
        "working_directory": word,
        "partition": st.one_of(st.none(), word),
        "run_time_max": st.one_of(st.none(), st.integers(60, 10**6)),
        "dependency": ids.map(lambda found: [":".join(found)] if found else []),
        "memory_max": st.one_of(st.none(), st.integers(1, 512)),
        "cores": st.integers(1, 64),
        "threads_per_core": maybe,
        "num_nodes": maybe,
        "exclusive": st.booleans(),
        "command": word,
    }
)
flux_variables = st.fixed_dictionaries(
    {
        "job_name": word,
        "cores": st.integers(1, 64),
        "threads_per_core": maybe,
        "gpus_per_core": maybe,
        "num_nodes": maybe,
        "exclusive": st.booleans(),
        "run_time_max": st.one_of(st.none(), st.integers(1, 10**6), st.floats(0.5, 1e6)),
        "priority": st.one_of(st.none(), st.integers(0, 31)),
        "dependency": ids,
        "command": word,
    }
)


@given(slurm_variables)
def test_the_slurm_script_is_its_template(variables: dict[str, Any]) -> None:
    from xl_spawn.batch import render_template

    pytest.importorskip("jinja2", reason="the comparison renders the jinja2 template")
    assert default_slurm_script(variables) == render_template(DEFAULT_SLURM_TEMPLATE, variables)


@given(flux_variables)
def test_the_flux_script_is_its_template(variables: dict[str, Any]) -> None:
    from xl_spawn.batch import render_template

    pytest.importorskip("jinja2", reason="the comparison renders the jinja2 template")
    assert default_flux_script(variables) == render_template(DEFAULT_FLUX_TEMPLATE, variables)


def test_the_variable_lists_are_the_templates_variables() -> None:
    from xl_spawn.batch import template_names

    pytest.importorskip("jinja2", reason="jinja2 parses the templates")
    assert template_names(DEFAULT_SLURM_TEMPLATE) == DEFAULT_SLURM_VARIABLES
    assert template_names(DEFAULT_FLUX_TEMPLATE) == DEFAULT_FLUX_VARIABLES


def test_the_default_scripts_need_no_jinja2(monkeypatch: pytest.MonkeyPatch) -> None:
    from xl_spawn import render_flux_script, render_job_script, template_variables

    monkeypatch.setitem(sys.modules, "jinja2", None)  # import jinja2 now fails
    slurm = render_job_script(None, {"job_name": "j", "working_directory": "/w", "cores": 2, "command": "run"})
    assert "#SBATCH --ntasks=2" in slurm and slurm.endswith("\n\nrun\n")
    flux = render_flux_script(None, {"job_name": "j", "cores": 2, "dependency": ["7"], "command": "run"})
    assert "# flux: --nslots=2" in flux and "# flux: --dependency=afterok:7" in flux
    assert template_variables(None) == DEFAULT_SLURM_VARIABLES
    with pytest.raises(ImportError, match="jinja2"):
        render_job_script("{{ cores }}", {"cores": 1})
