"""hack/localpod.py reproduces what a kubelet gives a container: env, mounts, ConfigMap files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "hack"))

from localpod import LocalPod, PodSpecError, map_value, write_projected  # noqa: E402


def deployment(volumes: list[dict], mounts: list[dict], env: list[dict]) -> dict:
    container = {"name": "c", "command": ["srv"], "args": ["--x"], "env": env,
                 "volumeMounts": mounts}  # fmt: skip
    return {"spec": {"template": {"spec": {"containers": [container], "volumes": volumes}}}}


def test_projected_files_are_swapped_atomically_like_the_kubelet_does(tmp_path):
    write_projected(tmp_path, {"drift.json": '{"pValueThreshold": 0.05}'})
    first_target = os.path.realpath(tmp_path / "..data")
    assert (tmp_path / "drift.json").read_text() == '{"pValueThreshold": 0.05}'
    assert (tmp_path / "drift.json").is_symlink()

    write_projected(tmp_path, {"drift.json": '{"pValueThreshold": 0.5}'})
    assert (tmp_path / "drift.json").read_text() == '{"pValueThreshold": 0.5}'
    assert os.path.realpath(tmp_path / "..data") != first_target
    assert not Path(first_target).exists(), "the old projection is removed after the swap"


def test_container_paths_in_env_are_mapped_to_local_paths():
    mapping = [("/models/bc", "/home/me/model"), ("/etc/cfg", "/tmp/v/cfg")]
    assert (
        map_value("file:///models/bc/model.skops", mapping) == "file:///home/me/model/model.skops"
    )
    assert map_value("/etc/cfg/drift.json", mapping) == "/tmp/v/cfg/drift.json"
    assert map_value("/etc/cfgx/other", mapping) == "/etc/cfgx/other"
    assert map_value("https://example/model", mapping) == "https://example/model"


def test_config_map_volume_env_and_overrides_reach_the_process(tmp_path):
    dep = deployment(
        volumes=[{"name": "cfg", "configMap": {"name": "m"}}, {"name": "tmp", "emptyDir": {}}],
        mounts=[{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "tmp", "mountPath": "/tmp"}],
        env=[{"name": "CFG", "value": "/etc/cfg/drift.json"}, {"name": "PORT", "value": "8000"}],
    )
    pod = LocalPod(dep, tmp_path, {}, {"PORT": "18000"})
    pod.prepare_volumes(lambda name: {"drift.json": "{}"})
    env = pod.environment()
    assert pod.command() == ["srv", "--x"]
    assert env["PORT"] == "18000"
    assert Path(env["CFG"]).read_text() == "{}"

    assert pod.sync_config_maps(lambda name: {"drift.json": '{"a": 1}'}) == ["m"]
    assert Path(env["CFG"]).read_text() == '{"a": 1}'
    assert pod.sync_config_maps(lambda name: {"drift.json": '{"a": 1}'}) == []


def test_a_volume_it_cannot_reproduce_is_refused_with_its_name(tmp_path):
    dep = deployment(
        volumes=[{"name": "models", "persistentVolumeClaim": {"claimName": "c"}}],
        mounts=[{"name": "models", "mountPath": "/mnt/models/c"}],
        env=[],
    )
    with pytest.raises(PodSpecError, match="models"):
        LocalPod(dep, tmp_path, {}, {}).prepare_volumes(lambda name: {})
    LocalPod(dep, tmp_path, {"/mnt/models/c": str(tmp_path)}, {}).prepare_volumes(lambda n: {})
