"""The Deployment the operator renders is executable: its command and env start a ready runtime.

No container engine runs here, so the container is reproduced as a local process by
hack/localpod.py (the same runner the demo uses): the rendered command, args and env, the rendered
ConfigMap projected as files, and the example model's image path mapped to freshly trained
artifacts. Nothing is edited by hand in between.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from aiops_operator.manifests import Owner, RenderOptions, build_configmap, build_deployment
from aiops_operator.spec import ModelServiceSpec
from tests.helpers import wait_runtime_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "hack"))

from localpod import LocalPod  # noqa: E402

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


def test_rendered_deployment_starts_a_ready_runtime_with_the_spec_threshold(
    example_model_dir, tmp_path
):
    example = yaml.safe_load((REPO_ROOT / "examples" / "modelservice.yaml").read_text())
    example["spec"]["drift"]["pValueThreshold"] = 0.2
    spec = ModelServiceSpec.model_validate(example["spec"])
    owner = Owner(name="breast-cancer", namespace="contract", uid="uid-1", generation=1)
    deployment = build_deployment(owner, spec, RenderOptions())
    config_map = build_configmap(owner, spec)

    port = free_port()
    pod = LocalPod(
        deployment,
        tmp_path,
        extra_mapping={"/models/breast-cancer": str(example_model_dir)},
        env_overrides={"HOST": "127.0.0.1", "PORT": str(port)},
    )
    pod.prepare_volumes(lambda name: dict(config_map["data"]))
    env = pod.environment()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    assert env["MODEL_URI"] == f"file://{example_model_dir}/model.skops"

    proc = subprocess.Popen(
        pod.command(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_runtime_ready(base, 60, proc)
        drift = get_json(f"{base}/drift")
        assert drift["p_value_threshold"] == pytest.approx(0.2)
        assert drift["window_size"] == spec.drift.window_size
        assert drift["check_every"] == spec.drift.check_every
    finally:
        proc.terminate()
        proc.wait(timeout=10)
