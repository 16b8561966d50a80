"""Dockerfile.runtime and Dockerfile.operator: hadolint, pinned slim bases, non-root users, no
build tools in the image that serves, the example model's shipped files baked in, and the
retrain target: the serving image plus git. (Built for real by hack/images.sh:
tests/delivery/test_image_build.py.)"""

from __future__ import annotations

import fnmatch
import re
from importlib.metadata import requires
from pathlib import Path

import pytest
import yaml

from aiops_operator.settings import OperatorSettings
from tests.delivery.delivery_helpers import OPERATOR_CHART, REPO_ROOT, run

DOCKERFILES = ["Dockerfile.runtime", "Dockerfile.operator"]
EXAMPLE_MODEL_COPY = "examples/models/breast-cancer /models/breast-cancer"
PINNED_BASE = re.compile(r"^python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / name).read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stages(name: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(FROM arguments, the stage's instructions after FROM) of each stage, in order."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for keyword, rest in instructions(name):
        if keyword == "FROM":
            out.append((rest, []))
        elif out:
            out[-1][1].append((keyword, rest))
    return out


def final_stage(name: str) -> list[tuple[str, str]]:
    """The instructions of the image the default target builds (the one that serves): the last
    stage, or the named stage a bare last `FROM <stage>` stands for."""
    built = stages(name)
    source, steps = built[-1]
    if not steps:
        (steps,) = [s for f, s in built if f.endswith(f" AS {source}")]
    return steps


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(hadolint: Path, name: str) -> None:
    proc = run(hadolint, "--no-color", REPO_ROOT / name, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_stage_uses_the_slim_base_pinned_by_digest(name: str) -> None:
    steps = instructions(name)
    (default,) = [rest for kw, rest in steps if kw == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    assert PINNED_BASE.match(default.split("=", 1)[1])
    froms = [rest for kw, rest in steps if kw == "FROM"]
    on_base = [f for f in froms if f.split()[0] == "${PYTHON_IMAGE}"]
    assert len(on_base) == 2, "multi-stage: build, then a clean stage that serves"
    # Any other stage builds on one of these (the runtime's retrain target, its default alias).
    names = {f.split(" AS ")[1] for f in froms if " AS " in f}
    assert all(f.split()[0] in names for f in froms if f not in on_base)


@pytest.mark.parametrize(
    ("name", "uid"),
    [
        ("Dockerfile.runtime", OperatorSettings.model_fields["runtime_uid"].default),
        (
            "Dockerfile.operator",
            yaml.safe_load((OPERATOR_CHART / "values.yaml").read_text())["podSecurityContext"][
                "runAsUser"
            ],
        ),
    ],
)
def test_final_stage_runs_as_the_non_root_uid_kubernetes_expects(name: str, uid: int) -> None:
    users = [rest for kw, rest in final_stage(name) if kw == "USER"]
    assert users == [f"{uid}:{uid}"]
    assert uid != 0


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_installs_nothing_and_copies_only_build_results(name: str) -> None:
    steps = final_stage(name)
    assert not [rest for kw, rest in steps if kw in {"RUN", "ADD"}]
    copies = [rest for kw, rest in steps if kw == "COPY"]
    assert copies
    assert all(c.startswith("--from=build /opt/venv ") or c == EXAMPLE_MODEL_COPY for c in copies)


def test_the_default_target_serves_and_the_retrain_target_adds_only_git() -> None:
    built = stages("Dockerfile.runtime")
    assert built[-1] == ("runtime", []), "the default target is the serving stage, unchanged"
    (retrain,) = [steps for source, steps in built if source == "runtime AS retrain"]
    runs = [rest for kw, rest in retrain if kw == "RUN"]
    assert len(runs) == 1
    assert "apt-get install -y --no-install-recommends git " in runs[0]
    assert not [kw for kw, _ in retrain if kw in {"COPY", "ADD", "ENV", "ENTRYPOINT", "CMD"}]
    assert [rest for kw, rest in retrain if kw == "USER"][-1] == "10001:10001"
    job = yaml.safe_load_all((REPO_ROOT / ".gitlab-ci.yml").read_text())
    _, pipeline = job
    assert pipeline["retrain-model"]["image"]["name"] == "$RETRAIN_IMAGE:$CI_COMMIT_SHORT_SHA"
    assert pipeline["build-retrain"]["variables"] == {
        "DOCKERFILE": "Dockerfile.runtime", "IMAGE": "$RETRAIN_IMAGE", "TARGET": "retrain",
    }  # fmt: skip


def test_runtime_image_bakes_the_shipped_example_model_the_example_modelservice_uses() -> None:
    steps = instructions("Dockerfile.runtime")
    assert EXAMPLE_MODEL_COPY in [
        rest for kw, rest in final_stage("Dockerfile.runtime") if kw == "COPY"
    ]
    # Training at build time would give other bytes on another CPU (BLAS kernels).
    assert not [rest for kw, rest in steps if kw == "RUN" and "train" in rest]
    example = yaml.safe_load((REPO_ROOT / "examples" / "modelservice.yaml").read_text())
    assert example["spec"]["model"]["uri"] == "file:///models/breast-cancer/model.skops"
    assert (
        example["spec"]["model"]["reference"]["uri"] == "file:///models/breast-cancer/reference.npy"
    )


def test_native_engine_is_the_default_and_brings_no_deep_learning_framework() -> None:
    args = {rest for kw, rest in instructions("Dockerfile.runtime") if kw == "ARG"}
    assert "DRIFT_ENGINE=native" in args
    runtime_requirements = " ".join(requires("aiops-runtime") or []).lower()
    for heavy in ("torch", "tensorflow", "alibi", "keras", "jax"):
        # Only an optional extra may bring them (the alibi build installs it explicitly).
        assert heavy not in re.sub(r"[^;]*;\s*extra\s*==[^,]*", "", runtime_requirements), heavy


def test_dockerignore_admits_exactly_what_the_dockerfiles_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source  # COPY <source>... <dest>
        for name in DOCKERFILES
        for kw, rest in instructions(name)
        if kw == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert copied == admitted
    for path in admitted:
        assert (REPO_ROOT / path).exists(), path
        assert not any(fnmatch.fnmatch(path, p) for p in patterns[1:] if not p.startswith("!"))


def test_operator_image_names_a_user_for_a_uid_without_passwd_entry() -> None:
    # Kopf calls getpass.getuser(); without USER it fails on a UID /etc/passwd does not know.
    envs = " ".join(rest for kw, rest in final_stage("Dockerfile.operator") if kw == "ENV")
    assert re.search(r"\bUSER=\S+", envs)
