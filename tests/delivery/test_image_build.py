"""hack/images.sh builds Dockerfile.runtime and Dockerfile.operator for real (buildah on a Python
base bootstrapped from Debian packages, no Docker) and exports them as OCI archives. The archives
are read here as what they are, tar + JSON: the config's USER and entry point, and the files a
node's containerd would unpack, e.g. the example model whose digests examples/modelservice.yaml
pins."""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from tests.delivery.delivery_helpers import REPO_ROOT, job_script, run
from tests.fakes import package_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = REPO_ROOT / "examples" / "modelservice.yaml"


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    """The key=value lines hack/images.sh prints (cached per user: seconds when warm)."""
    out = run(REPO_ROOT / "hack" / "images.sh", timeout=3600).stdout.strip().splitlines()
    assert [line.split("=", 1)[0] for line in out[-2:]] == ["runtime", "operator"], out
    return dict(line.split("=", 1) for line in out if "=" in line)


class OciImage:
    """One image of an OCI archive: its config and its layers' file tree (whiteouts applied)."""

    def __init__(self, archive: Path, want: set[str]) -> None:
        self.members: dict[str, tarfile.TarInfo] = {}
        self.contents: dict[str, bytes] = {}
        with tarfile.open(archive) as outer:

            def read(name: str) -> IO[bytes]:
                member = outer.extractfile(name)
                assert member is not None, f"{archive}: no {name}"
                return member

            def blob(digest: str) -> IO[bytes]:
                return read("blobs/" + digest.replace(":", "/", 1))

            (entry,) = json.load(read("index.json"))["manifests"]
            self.ref_name = entry["annotations"]["org.opencontainers.image.ref.name"]
            manifest = json.load(blob(entry["digest"]))
            self.config: dict[str, Any] = json.load(blob(manifest["config"]["digest"]))["config"]
            for layer in manifest["layers"]:
                with tarfile.open(fileobj=blob(layer["digest"]), mode="r|*") as tar:
                    for member in tar:
                        self._apply(tar, member, want)

    def _apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo, want: set[str]) -> None:
        path = posixpath.normpath("/" + member.name)
        parent, name = posixpath.split(path)
        if name.startswith(".wh."):  # a whiteout: what lower layers had there is gone
            gone = parent if name == ".wh..wh..opq" else posixpath.join(parent, name[4:])
            for p in [p for p in self.members if p.startswith(gone.rstrip("/") + "/")]:
                del self.members[p]
                self.contents.pop(p, None)
            if name != ".wh..wh..opq":
                self.members.pop(gone, None)
                self.contents.pop(gone, None)
            return
        self.members[path] = member
        self.contents.pop(path, None)
        if path in want and member.isfile():
            data = tar.extractfile(member)
            assert data is not None
            self.contents[path] = data.read()

    def resolve(self, path: str, depth: int = 0) -> str | None:
        """The path of the file `path` names inside the image, symlinks followed; None if none."""
        assert depth < 40, f"symlink loop at {path}"
        current = "/"
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts):
            candidate = posixpath.join(current, part)
            member = self.members.get(candidate)
            if member is None:
                return None
            if member.issym():
                target = posixpath.join(current, member.linkname)  # absolute linkname wins
                rest = "/".join(parts[i + 1 :])
                return self.resolve(posixpath.normpath(posixpath.join(target, rest)), depth + 1)
            current = candidate
        return current

    def which(self, command: str) -> str | None:
        """`command` looked up along the config's PATH."""
        env = dict(item.split("=", 1) for item in self.config.get("Env", []))
        for directory in env.get("PATH", "").split(":"):
            found = self.resolve(posixpath.join(directory, command))
            if found is not None:
                return found
        return None


def readable_by_anyone(image: OciImage, path: str) -> bool:
    """Others may read the file and traverse every directory above it (UID 10001 is no owner)."""
    if not image.members[path].mode & 0o004:
        return False
    parent = posixpath.dirname(path)
    while parent != "/":
        if not image.members[parent].mode & 0o001:
            return False
        parent = posixpath.dirname(parent)
    return True


def test_refs_are_printed_last_and_every_archive_exists(built: dict[str, str]) -> None:
    assert built["runtime"].startswith("localhost/aiops-quality-runtime:")
    assert built["operator"].startswith("localhost/aiops-quality-operator:")
    assert built["retrain"].startswith("localhost/aiops-quality-retrain:")
    for name in ("runtime_archive", "operator_archive", "retrain_archive", "pause_archive"):
        archive = Path(built[name])
        assert archive.is_file(), archive
        assert archive.stat().st_size > 0, archive
        assert tarfile.is_tarfile(archive), archive


def test_runtime_image_runs_as_10001_and_bakes_the_model_the_example_pins(
    built: dict[str, str],
) -> None:
    model = yaml.safe_load(EXAMPLE.read_text())["spec"]["model"]
    pinned = {
        model["uri"].removeprefix("file://"): model["sha256"],
        model["reference"]["uri"].removeprefix("file://"): model["reference"]["sha256"],
    }
    image = OciImage(Path(built["runtime_archive"]), want=set(pinned))
    assert image.ref_name == built["runtime"]
    assert image.config["User"] == "10001:10001"
    assert image.config["Cmd"][:2] == ["aiops-runtime", "serve"]
    assert image.which("aiops-runtime"), "no aiops-runtime on the image's PATH"
    for path, sha256 in pinned.items():
        assert path in image.contents, f"{path} is not in the image"
        assert hashlib.sha256(image.contents[path]).hexdigest() == sha256, path
        assert readable_by_anyone(image, path), f"UID 10001 cannot read {path}"


def test_operator_image_entry_point_exists_with_its_interpreter(built: dict[str, str]) -> None:
    candidates = {f"{d}/aiops-operator" for d in ("/opt/venv/bin", "/usr/local/bin", "/usr/bin")}
    image = OciImage(Path(built["operator_archive"]), want=candidates)
    assert image.ref_name == built["operator"]
    assert image.config["User"] == "10001:10001"
    assert image.config["Entrypoint"] == ["aiops-operator"]
    entry_point = image.which("aiops-operator")
    assert entry_point in image.contents, f"aiops-operator not found on PATH: {entry_point}"
    assert image.members[entry_point].mode & 0o001, "the entry point is not executable by others"
    shebang = image.contents[entry_point].splitlines()[0].decode()
    assert shebang.startswith("#!"), shebang
    interpreter = image.resolve(shebang[2:].split()[0])
    assert interpreter is not None, f"{shebang}: no such interpreter in the image"
    assert image.members[interpreter].isfile(), interpreter
    assert image.members[interpreter].mode & 0o001, f"{interpreter} is not executable by others"


def test_pause_image_is_the_static_pause_binary_alone(built: dict[str, str]) -> None:
    image = OciImage(Path(built["pause_archive"]), want={"/pause"})
    assert image.ref_name == built["pause"]
    assert image.config["Entrypoint"] == ["/pause"]
    assert image.config["User"] == "65535:65535"
    assert set(image.contents) == {"/pause"}
    assert image.contents["/pause"][:4] == b"\x7fELF"
    assert [p for p in image.members if p != "/"] == ["/pause"], sorted(image.members)


def test_the_retrain_job_runs_in_the_retrain_image(built: dict[str, str], tmp_path: Path) -> None:
    """retrain-model's script, run as GitLab's docker executor would in the image CI builds for
    it (`--target retrain`): it trains, uploads to the package registry stand-in, commits with
    the image's git and pushes to a local bare repository (git's insteadOf for the project URL)."""
    job = tmp_path / "job"
    work, remote = job / "work", job / "remote.git"
    run("git", "init", "-q", "--bare", "-b", "main", remote)
    run("git", "init", "-q", "-b", "main", work)
    files = [".gitlab-ci.yml", "examples/modelservice.yaml", ".ci/retrain/bump-modelservice.py",
             ".ci/retrain/upload-artifacts.py"]  # fmt: skip
    for name in files:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes((REPO_ROOT / name).read_bytes())
    dev = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    run("git", "-C", work, *dev, "add", *files)
    run("git", "-C", work, *dev, "commit", "-q", "-m", "runtime: new model code")
    run("git", "-C", work, "push", "-q", str(remote), "main")
    _, pipeline = yaml.safe_load_all((REPO_ROOT / ".gitlab-ci.yml").read_text())
    retrain = pipeline["retrain-model"]
    inputs = {"modelservice": "breast-cancer", "namespace": "aiops-quality", "drift_time": "",
              "drift_p_value": ""}  # fmt: skip
    (job / "job.sh").write_text(job_script(retrain, inputs))
    token, push_token = "glcbt-image-job", "glpat-image-push"
    with package_registry(token) as registry:
        variables = {
            **{k: str(v) for k, v in retrain["variables"].items()},
            "HOME": "/root", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main",
            "CI_COMMIT_SHORT_SHA": "abc12345", "CI_PIPELINE_ID": "7",
            "CI_SERVER_HOST": "gitlab.example.com", "CI_PROJECT_PATH": "aiops/aiops-quality",
            "CI_API_V4_URL": f"{registry.base}/api/v4", "CI_PROJECT_ID": "42",
            "CI_JOB_TOKEN": token, "RETRAIN_SEED": "7", "RETRAIN_PUSH_TOKEN": push_token,
            "RUNTIME_IMAGE": "registry.example/aiops/aiops-quality-runtime",
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "url./job/remote.git.insteadOf",
            "GIT_CONFIG_VALUE_0":
                f"https://oauth2:{push_token}@gitlab.example.com/aiops/aiops-quality.git",
        }  # fmt: skip
        (job / "job.env").write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        proc = run(REPO_ROOT / "hack" / "images.sh", "run-job", built["retrain"], job,
                   timeout=600)  # fmt: skip
        stored = registry.stored()
    out = proc.stdout + proc.stderr
    log = run("git", "-C", remote, "log", "--format=%an %s", "main").stdout.splitlines()
    assert len(log) == 2, out
    assert log[0].startswith("aiops-retrain-bot retrain: model sha256 "), log
    pushed = yaml.safe_load(run("git", "-C", remote, "show", "main:examples/modelservice.yaml")
                            .stdout)  # fmt: skip
    model = pushed["spec"]["model"]
    uploaded = {registry.base + path: data for path, data in stored.items()}
    assert hashlib.sha256(uploaded[model["uri"]]).hexdigest() == model["sha256"]
    assert pushed["spec"]["image"] == "registry.example/aiops/aiops-quality-runtime:abc12345"
