"""Run a Deployment's container as a local process, the way a kubelet would, minus the container.

There is no container engine here, so KWOK only pretends that pods run. For the demo and the
end-to-end tests the runtime must really run: this takes the first container of a Deployment as
the operator rendered it (command, args, env, volume mounts) and starts it on this machine.
ConfigMap volumes become local directories laid out like the kubelet's (`..data` symlink swapped
atomically on change) and kept in sync with the API server; emptyDir volumes become temporary
directories; paths baked into the image (the model under /models) are mapped with --map.

    python3 hack/localpod.py -n NS --deployment NAME --map /models/breast-cancer=DIR \
        --port 18000 [--kubeconfig FILE]

Standard library only; talks to the API server through kubectl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


class PodSpecError(ValueError):
    """The Deployment uses something this local runner cannot reproduce."""


def kubectl_json(kubectl: str, kubeconfig: str | None, *args: str) -> dict[str, Any]:
    cmd = [kubectl, *(["--kubeconfig", kubeconfig] if kubeconfig else []), *args, "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def write_projected(directory: Path, data: dict[str, str]) -> None:
    """Lay out `data` like the kubelet's atomic writer: files behind a swapped `..data` link."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for key, value in data.items():
        (stamp / key).write_text(value)
    tmp_link = directory / "..data_tmp"
    if tmp_link.is_symlink():
        tmp_link.unlink()
    tmp_link.symlink_to(stamp.name)
    old = os.path.realpath(directory / "..data") if (directory / "..data").exists() else None
    os.replace(tmp_link, directory / "..data")
    for key in data:
        link = directory / key
        if not link.is_symlink():
            link.symlink_to(Path("..data") / key)
    if old and Path(old) != stamp:
        shutil.rmtree(old, ignore_errors=True)


def map_value(value: str, mapping: list[tuple[str, str]]) -> str:
    """Rewrite container paths (plain or file:// URIs) to their local counterparts."""
    for container_path, local_path in mapping:
        for prefix in (f"file://{container_path}", container_path):
            if value == prefix or value.startswith(prefix + "/"):
                head = "file://" if prefix.startswith("file://") else ""
                return head + local_path + value[len(prefix) :]
    return value


class LocalPod:
    """The first container of one Deployment, running as a local process."""

    def __init__(
        self,
        deployment: dict[str, Any],
        workdir: Path,
        extra_mapping: dict[str, str],
        env_overrides: dict[str, str],
    ) -> None:
        self.deployment = deployment
        self.workdir = workdir
        self.mapping: list[tuple[str, str]] = sorted(
            extra_mapping.items(), key=lambda item: len(item[0]), reverse=True
        )
        self.env_overrides = env_overrides
        self.config_maps: dict[str, tuple[Path, dict[str, str]]] = {}
        spec = deployment["spec"]["template"]["spec"]
        self.container = spec["containers"][0]
        self.volumes = {v["name"]: v for v in spec.get("volumes", [])}

    def prepare_volumes(self, fetch_config_map) -> None:  # type: ignore[no-untyped-def]
        mounts = []
        for mount in self.container.get("volumeMounts", []):
            volume = self.volumes.get(mount["name"])
            if volume is None:
                raise PodSpecError(f"volumeMount {mount['name']} names no volume")
            local = self.workdir / "volumes" / mount["name"]
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                data = fetch_config_map(name)
                write_projected(local, data)
                self.config_maps[name] = (local, data)
            elif "emptyDir" in volume:
                local.mkdir(parents=True, exist_ok=True)
            elif not any(mount["mountPath"].startswith(c) for c, _ in self.mapping):
                kind = next(iter(set(volume) - {"name"}), "unknown")
                raise PodSpecError(f"volume {mount['name']} ({kind}) needs --map for its mount")
            else:
                continue
            mounts.append((mount["mountPath"], str(local)))
        self.mapping = sorted([*self.mapping, *mounts], key=lambda item: len(item[0]), reverse=True)

    def command(self) -> list[str]:
        argv = [*self.container.get("command", []), *self.container.get("args", [])]
        if not argv:
            raise PodSpecError("the container has no command: the image's entrypoint is unknown")
        return argv

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        for item in self.container.get("env", []):
            if "value" not in item:
                raise PodSpecError(f"env {item['name']} uses valueFrom, which is not reproduced")
            env[item["name"]] = map_value(item["value"], self.mapping)
        env.update(self.env_overrides)
        return env

    def sync_config_maps(self, fetch_config_map) -> list[str]:  # type: ignore[no-untyped-def]
        """Re-project every ConfigMap that changed; return their names."""
        changed = []
        for name, (local, data) in list(self.config_maps.items()):
            fresh = fetch_config_map(name)
            if fresh != data:
                write_projected(local, fresh)
                self.config_maps[name] = (local, fresh)
                changed.append(name)
        return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a Deployment's container locally.")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--map", action="append", default=[], metavar="CONTAINER_PATH=LOCAL")
    parser.add_argument("--port", type=int, help="sets PORT (and HOST=127.0.0.1)")
    parser.add_argument("--sync-interval", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--print-only", action="store_true", help="print argv and env as JSON")
    args = parser.parse_args(argv)

    def fetch_config_map(name: str) -> dict[str, str]:
        cm = kubectl_json(args.kubectl, args.kubeconfig, "-n", args.namespace, "get", "cm", name)
        return dict(cm.get("data") or {})

    deployment = kubectl_json(
        args.kubectl, args.kubeconfig, "-n", args.namespace, "get", "deployment", args.deployment
    )
    mapping = dict(item.split("=", 1) for item in args.map)
    overrides = {"HOST": "127.0.0.1", "PORT": str(args.port)} if args.port else {}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"localpod-{args.deployment}-"))
    pod = LocalPod(deployment, workdir, mapping, overrides)
    try:
        pod.prepare_volumes(fetch_config_map)
        argv_, env = pod.command(), pod.environment()
    except PodSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_only:
        print(json.dumps({"argv": argv_, "env": env, "workdir": str(workdir)}))
        return 0

    child = subprocess.Popen(argv_, env=env)
    stop = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        stop.set()
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while child.poll() is None and not stop.wait(args.sync_interval):
        try:
            for name in pod.sync_config_maps(fetch_config_map):
                print(f"localpod: ConfigMap {name} changed; files updated", file=sys.stderr)
        except RuntimeError as exc:  # the API server may be briefly away; keep the pod running
            print(f"localpod: sync failed: {exc}", file=sys.stderr)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
