"""The GitLab pipeline: its shape, and the retrain-model job run for real by gitlab-ci-local
(shell executor) against a local bare Git remote."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiops_runtime.train import train
from tests.delivery.delivery_helpers import REPO_ROOT, run

PIPELINE = REPO_ROOT / ".gitlab-ci.yml"
MODELSERVICE = "examples/modelservice.yaml"
# The files the job uses; the test repository holds exactly these.
JOB_FILES = [".gitlab-ci.yml", MODELSERVICE, "hack/bump-modelservice.py"]
# gitlab-ci-local derives CI_PROJECT_PATH, CI_SERVER_HOST and CI_REGISTRY_IMAGE from origin.
ORIGIN = "https://gitlab.example.com/aiops/aiops-quality.git"
BOT = "aiops-retrain-bot"


def git(repo: Path, *args: str) -> str:
    """git in `repo`, as a developer (never the retrain bot)."""
    dev = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    return run("git", "-C", repo, *dev, *args).stdout.strip()


def pipeline() -> dict[str, Any]:
    """The pipeline definition."""
    return yaml.safe_load(PIPELINE.read_text())


def test_stages_run_test_then_build_then_retrain() -> None:
    assert pipeline()["stages"] == ["test", "build", "retrain-model"]


def test_images_are_built_from_both_dockerfiles_and_tagged_with_the_commit() -> None:
    ci = pipeline()
    script = " ".join(ci[".kaniko"]["script"])
    assert '--destination "$IMAGE:$CI_COMMIT_SHORT_SHA"' in script
    built = {ci[job]["variables"]["DOCKERFILE"] for job in ("build-runtime", "build-operator")}
    assert built == {"Dockerfile.runtime", "Dockerfile.operator"}
    for dockerfile in built:
        assert (REPO_ROOT / dockerfile).is_file()


@pytest.fixture
def ci_repo(tmp_path: Path) -> tuple[Path, Path]:
    """(work tree, bare remote): a repository with the job's files, pushed to the remote."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    run("git", "init", "-q", "--bare", "-b", "main", remote)
    run("git", "init", "-q", "-b", "main", work)
    for name in JOB_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, work / name)
    git(work, "add", *JOB_FILES)
    git(work, "commit", "-q", "-m", "runtime: new model code")
    git(work, "remote", "add", "origin", ORIGIN)
    git(work, "push", "-q", str(remote), "main")
    return work, remote


def retrain(gitlab_ci_local: Path, work: Path, remote: Path, *variables: str) -> str:
    """Run the retrain-model stage as a pipeline trigger would; returns its output."""
    venv_bin = Path(sys.executable).parent  # aiops-runtime and python3 with the runtime's libs
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    args = [
        *(
            "--stage",
            "retrain-model",
            "--force-shell-executor",
            "--home",
            str(work.parent / "home"),
        ),
        *("--ignore-predefined-vars", "CI_PIPELINE_SOURCE,CI_COMMIT_AUTHOR"),
        *("--variable", "CI_PIPELINE_SOURCE=trigger"),
        *("--variable", f"RETRAIN_PUSH_URL={remote}"),
    ]
    for variable in variables:
        args += ["--variable", variable]
    proc = run(gitlab_ci_local, *args, cwd=work, env=env, timeout=600)
    return proc.stdout + proc.stderr


def remote_log(remote: Path) -> list[str]:
    """Commit hashes of the remote's main, newest first."""
    return run("git", "-C", remote, "log", "--format=%H", "main").stdout.split()


@pytest.mark.integration
def test_retrain_model_pushes_one_commit_with_the_new_digest(
    gitlab_ci_local: Path, ci_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    work, remote = ci_repo
    before = remote_log(remote)
    out = retrain(gitlab_ci_local, work, remote, "RETRAIN_SEED=7")
    assert "PASS  retrain-model" in out, out
    after = remote_log(remote)
    assert after[1:] == before, "the remote should receive exactly one new commit"
    new = after[0]
    assert run("git", "-C", remote, "log", "-1", "--format=%an", new).stdout.strip() == BOT
    assert "[skip ci]" in run("git", "-C", remote, "log", "-1", "--format=%s", new).stdout
    changed = run("git", "-C", remote, "diff", "--name-only", f"{new}~1", new).stdout.split()
    assert changed == [MODELSERVICE]
    pushed = yaml.safe_load(run("git", "-C", remote, "show", f"{new}:{MODELSERVICE}").stdout)
    expected = train(tmp_path / "seed7", seed=7, force=True).manifest
    committed = yaml.safe_load((REPO_ROOT / MODELSERVICE).read_text())
    assert pushed["spec"]["model"]["sha256"] == expected["model"]["sha256"]
    assert pushed["spec"]["model"]["sha256"] != committed["spec"]["model"]["sha256"]
    assert pushed["spec"]["model"]["reference"]["sha256"] == expected["reference"]["sha256"]
    assert pushed["spec"]["image"].endswith(f"/aiops-quality-runtime:{before[0][:8]}")


@pytest.mark.integration
def test_retrain_model_does_not_run_again_on_its_own_commit(
    gitlab_ci_local: Path, ci_repo: tuple[Path, Path]
) -> None:
    work, remote = ci_repo
    retrain(gitlab_ci_local, work, remote, "RETRAIN_SEED=7")
    after_first = remote_log(remote)
    # What GitLab would set for the bot's commit (gitlab-ci-local does not set CI_COMMIT_AUTHOR):
    # the job's rules exclude it.
    author = run("git", "-C", work, "log", "-1", "--format=%an <%ae>").stdout.strip()
    out = retrain(gitlab_ci_local, work, remote, "RETRAIN_SEED=8", f"CI_COMMIT_AUTHOR={author}")
    assert "retrain-model" not in out
    # Without that variable the job starts, and its own check of HEAD's author stops it.
    out = retrain(gitlab_ci_local, work, remote, "RETRAIN_SEED=8")
    assert f"HEAD is a commit of {BOT}; not retraining on it" in out
    assert remote_log(remote) == after_first


@pytest.mark.integration
def test_retrain_with_unchanged_artifacts_and_image_commits_nothing(
    gitlab_ci_local: Path, ci_repo: tuple[Path, Path]
) -> None:
    work, remote = ci_repo
    committed = yaml.safe_load((work / MODELSERVICE).read_text())
    image = committed["spec"]["image"]
    repository, tag = image.rsplit(":", 1)
    before = remote_log(remote)
    out = retrain(
        gitlab_ci_local, work, remote, "RETRAIN_SEED=42", f"RUNTIME_IMAGE={repository}",
        f"CI_COMMIT_SHORT_SHA={tag}",
    )  # fmt: skip
    assert "already points at these artifacts; nothing to commit" in out
    assert remote_log(remote) == before
