"""The GitLab pipeline: its shape, and the retrain-model job run for real by gitlab-ci-local
(shell executor) against a local bare Git remote."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiops_runtime.train import MANIFEST_FILE, METRICS_FILE, MODEL_FILE, REFERENCE_FILE, train
from tests.delivery.delivery_helpers import REPO_ROOT, run

PIPELINE = REPO_ROOT / ".gitlab-ci.yml"
ARTIFACT_FILES = (MODEL_FILE, REFERENCE_FILE, METRICS_FILE, MANIFEST_FILE)
MODELSERVICE = "examples/modelservice.yaml"
MODEL_DIR = "examples/models/breast-cancer"
ARTIFACTS = [f"{MODEL_DIR}/{name}" for name in ARTIFACT_FILES]
# The files the job uses; the test repository holds exactly these.
JOB_FILES = [".gitlab-ci.yml", MODELSERVICE, "hack/bump-modelservice.py", *ARTIFACTS]
# gitlab-ci-local derives CI_PROJECT_PATH, CI_SERVER_HOST and CI_REGISTRY_IMAGE from origin.
ORIGIN = "https://gitlab.example.com/aiops/aiops-quality.git"
BOT = "aiops-retrain-bot"


def git(repo: Path, *args: str) -> str:
    """git in `repo`, as a developer (never the retrain bot)."""
    dev = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    return run("git", "-C", repo, *dev, *args).stdout.strip()


def run_bytes(*args: str | Path) -> bytes:
    """A command's raw standard output (a binary file from git show)."""
    return subprocess.run([str(a) for a in args], capture_output=True, check=True).stdout


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
    # The new digests and the files they name, in one commit (the metrics may stay the same).
    assert {MODELSERVICE, f"{MODEL_DIR}/{MODEL_FILE}", f"{MODEL_DIR}/{MANIFEST_FILE}"} <= set(
        changed
    )
    assert set(changed) <= {MODELSERVICE, *ARTIFACTS}
    pushed = yaml.safe_load(run("git", "-C", remote, "show", f"{new}:{MODELSERVICE}").stdout)
    expected = train(tmp_path / "seed7", seed=7, force=True).manifest
    committed = yaml.safe_load((REPO_ROOT / MODELSERVICE).read_text())
    assert pushed["spec"]["model"]["sha256"] == expected["model"]["sha256"]
    assert pushed["spec"]["model"]["sha256"] != committed["spec"]["model"]["sha256"]
    assert pushed["spec"]["model"]["reference"]["sha256"] == expected["reference"]["sha256"]
    pushed_model = run_bytes("git", "-C", remote, "show", f"{new}:{MODEL_DIR}/{MODEL_FILE}")
    assert hashlib.sha256(pushed_model).hexdigest() == pushed["spec"]["model"]["sha256"]
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
    repository, tag = committed["spec"]["image"].rsplit(":", 1)
    same_image = (f"RUNTIME_IMAGE={repository}", f"CI_COMMIT_SHORT_SHA={tag}")
    # The first retrain commits only if this machine's BLAS gives other bytes than the shipped
    # ones; either way the remote then holds what this machine trains with seed 42.
    retrain(gitlab_ci_local, work, remote, "RETRAIN_SEED=42", *same_image)
    git(work, "fetch", "-q", str(remote), "main")
    git(work, "reset", "-q", "--hard", "FETCH_HEAD")
    git(work, "commit", "-q", "--allow-empty", "-m", "docs: a developer's commit on top")
    git(work, "push", "-q", str(remote), "main")
    before = remote_log(remote)
    out = retrain(gitlab_ci_local, work, remote, "RETRAIN_SEED=42", *same_image)
    assert "already points at these artifacts; nothing to commit" in out
    assert remote_log(remote) == before
