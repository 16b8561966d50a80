"""Kubernetes client benchmark: the operator's light client (kube.py) against lightkube.

What the operator does per ModelService, done N times by each client against one fresh local
control plane: a server-side apply of a ConfigMap the size of the operator's (its drift
settings), all N at once through up to 100 requests in flight; then a list of the N, and a watch
that streams them (the N initial ADDED events). Each client runs in a process of its own (kube.py
in the project's .venv, lightkube in a pinned virtualenv under the bench-venvs cache), in the
order A B B A so neither profits from a cluster that has taken fewer writes. Per client: wall time
of each part (the better of its two runs), the RSS its import adds, and the RSS its run adds.
The last line is one JSON object. Usage: python bench/kube_client_bench.py [--n 1000]
(or BENCH_N).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_DIR = Path.home() / ".cache" / "aiops-quality" / "bench-venvs"
LIGHTKUBE_SPEC = ["lightkube==1.0.1", "lightkube-models==1.37.0.8"]
IN_FLIGHT = 100  # kube.py's connection pool in the operator (api_connections)
CLIENTS = ("kube.py", "lightkube")
ORDER = ("kube.py", "lightkube", "lightkube", "kube.py")


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def configmaps(template: dict[str, Any], namespace: str, n: int) -> list[dict[str, Any]]:
    """N copies of the template ConfigMap named cm-0000.. in `namespace`."""
    docs = []
    for i in range(n):
        doc = json.loads(json.dumps(template))
        doc["metadata"] = {**doc["metadata"], "name": f"cm-{i:04d}", "namespace": namespace}
        docs.append(doc)
    return docs


def ours(names: list[str]) -> list[str]:
    """The benchmark's ConfigMaps among `names` (every namespace also holds kube-root-ca.crt)."""
    return [name for name in names if name.startswith("cm-")]


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per client: the lowest wall time of each part over its runs and the highest RSS figures
    (the better time and the worse memory: a noisy neighbour only ever adds time)."""
    out: dict[str, dict[str, float]] = {}
    for client in sorted({r["client"] for r in runs}):
        mine = [r for r in runs if r["client"] == client]
        out[client] = {
            **{k: min(r[k] for r in mine) for k in ("apply_s", "list_s", "watch_s", "total_s")},
            **{k: max(r[k] for r in mine) for k in ("import_rss_mb", "run_rss_mb", "peak_mb")},
        }
    return out


def compare(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    """lightkube's figures over kube.py's (above 1: kube.py is lighter or faster)."""
    ours, theirs = summary["kube.py"], summary["lightkube"]
    return {
        f"lightkube_vs_kubepy_{k}": round(theirs[k] / ours[k], 2) if ours[k] else float("inf")
        for k in ("total_s", "import_rss_mb", "run_rss_mb")
    }


def parts(began: float, applied: float, listed: float, watched: float) -> dict[str, float]:
    """The wall time of each part from the moments between them."""
    return {"apply_s": applied - began, "list_s": listed - applied, "watch_s": watched - listed}


async def run_kubepy(docs: list[dict[str, Any]], namespace: str) -> dict[str, float]:
    from aiops_operator.kube import KubeClient, load_connection, resource_path

    client = KubeClient(load_connection(), field_manager="bench", max_connections=IN_FLIGHT)
    path = resource_path("v1", "configmaps", namespace)
    try:
        began = time.monotonic()
        await asyncio.gather(*(client.apply(doc) for doc in docs))
        applied = time.monotonic()
        listed = await client.request("GET", path)
        names = [item["metadata"]["name"] for item in listed["items"]]
        assert len(ours(names)) == len(docs), len(names)
        done_list = time.monotonic()
        seen = 0
        async for event in client.watch(path, {"timeoutSeconds": "120"}):
            seen += event["type"] == "ADDED" and bool(ours([event["object"]["metadata"]["name"]]))
            if seen == len(docs):
                break
        watched = time.monotonic()
    finally:
        await client.close()
    return parts(began, applied, done_list, watched)


async def run_lightkube(docs: list[dict[str, Any]], namespace: str) -> dict[str, float]:
    import httpx2  # lightkube 1.x's HTTP client (a fork of httpx)
    from lightkube import AsyncClient, KubeConfig
    from lightkube.resources.core_v1 import ConfigMap

    limit = asyncio.Semaphore(IN_FLIGHT)  # its pool (100) would time out a longer queue
    client = AsyncClient(
        KubeConfig.from_file(os.environ["KUBECONFIG"]),
        field_manager="bench",
        timeout=httpx2.Timeout(30.0, pool=None),
    )

    async def apply(doc: dict[str, Any]) -> None:
        async with limit:
            await client.apply(ConfigMap.from_dict(doc), force=True)

    try:
        began = time.monotonic()
        await asyncio.gather(*(apply(doc) for doc in docs))
        applied = time.monotonic()
        names = [cm.metadata.name async for cm in client.list(ConfigMap, namespace=namespace)]
        assert len(ours(names)) == len(docs), len(names)
        done_list = time.monotonic()
        seen = 0
        async for op, obj in client.watch(ConfigMap, namespace=namespace):
            seen += op == "ADDED" and bool(ours([obj.metadata.name]))
            if seen == len(docs):
                break
        watched = time.monotonic()
    finally:
        await client.close()
    return parts(began, applied, done_list, watched)


def worker(client: str, template_file: Path, namespace: str, n: int) -> dict[str, Any]:
    """One client's run in this process: its import and run RSS, its wall times."""
    docs = configmaps(json.loads(template_file.read_text()), namespace, n)
    before, _ = rss_mb()
    if client == "kube.py":
        import aiops_operator.kube  # noqa: F401  (what the operator imports, Kopf included)

        run = run_kubepy
    else:
        import lightkube.resources.core_v1  # noqa: F401  (what run_lightkube uses)

        run = run_lightkube
    imported, _ = rss_mb()
    began = time.monotonic()
    times = asyncio.run(run(docs, namespace))
    total = time.monotonic() - began
    after, peak = rss_mb()
    return {
        "client": client,
        **{k: round(v, 3) for k, v in times.items()},
        "total_s": round(total, 3),
        "import_rss_mb": round(imported - before, 1),
        "run_rss_mb": round(after - imported, 1),
        "peak_mb": round(peak, 1),
    }


def ensure_lightkube() -> Path:
    """The pinned lightkube virtualenv's python (created on first use)."""
    venv = VENV_DIR / "lightkube-venv"
    python, stamp = venv / "bin" / "python", venv / ".bench-spec"
    spec = "\n".join(LIGHTKUBE_SPEC)
    if python.exists() and stamp.exists() and stamp.read_text() == spec:
        return python
    print(f"installing {' '.join(LIGHTKUBE_SPEC)} into {venv}", file=sys.stderr)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, *LIGHTKUBE_SPEC],
        check=True,
        timeout=1800,
    )
    stamp.write_text(spec)
    return python


def measure(n: int) -> dict[str, Any]:
    import yaml
    from aiops_harness.localcluster import temporary_cluster

    from aiops_operator.manifests import Owner, build_configmap
    from aiops_operator.spec import ModelServiceSpec

    example = yaml.safe_load((REPO_ROOT / "examples" / "modelservice.yaml").read_text())
    pythons = {"kube.py": Path(sys.executable), "lightkube": ensure_lightkube()}
    owner = Owner(name="cm", namespace="x", uid="", generation=1)
    template = build_configmap(owner, ModelServiceSpec.model_validate(example["spec"]))
    del template["metadata"]["ownerReferences"]
    cluster = temporary_cluster()
    print("starting the local control plane", file=sys.stderr)
    cluster.start()
    runs = []
    try:
        template_file = Path(cluster.state_dir) / "configmap.json"
        template_file.write_text(json.dumps(template))
        env = {**os.environ, **cluster.env, "KUBECONFIG": str(cluster.kubeconfig)}
        for i, client in enumerate(ORDER):
            namespace = f"bench-client-{i}"
            cluster.kubectl("create", "namespace", namespace)
            argv = [str(pythons[client]), __file__, "--worker", client, "--n", str(n)]
            argv += ["--namespace", namespace, "--template", str(template_file)]
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=900, check=False
            )
            if done.returncode != 0:
                raise RuntimeError(f"{client} worker failed: {done.stderr[-2000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(run), file=sys.stderr)
            runs.append(run)
    finally:
        cluster.stop()
    summary = summarize(runs)
    return {"n": n, "in_flight": IN_FLIGHT, **summary, **compare(summary), "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "1000")))
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--template", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.template, args.namespace, args.n)))
        return 0
    print(json.dumps(measure(args.n)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
