"""Runtime throughput and latency vs a floor, the seed design and MLServer (make bench-runtime).

Each variant is a real server process pinned to one core; wrk (Debian's package) loads it from
another core with a rotation of held-out breast-cancer rows (one row per request), c = 1, 16, 64,
for DURATION seconds each, in ROUNDS alternating rounds (order reversed every other round); figures
are medians over rounds. Variants:

  floor      bench/runtime_floor.py: same stack and validation, constant answer
  drift_on   aiops-runtime serve, drift detection on (the default settings)
  drift_off  aiops-runtime serve, DRIFT_ENABLED=false
  seed       bench/runtime_seed_server.py: alibi-detect MMD on the last 100 rows in every request
  mlserver   MLServer + mlserver-sklearn serving the same model (joblib), V2 inference protocol

The seed and MLServer variants run in their own virtualenvs (created under --venv-dir on first use,
never in the repository's venv). The server's own CPU time per request is reported beside the
throughput: it is less sensitive than req/s to other load on the machine. The last line printed is
one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer

from aiops_runtime.train import train

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VENV_BIN = Path(sys.executable).parent
DEFAULT_VENV_DIR = Path.home() / ".cache" / "aiops-quality" / "bench-venvs"
VARIANTS = ("floor", "drift_on", "drift_off", "seed", "mlserver")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MLSERVER_MODEL = "breast-cancer"
# Pinned so a rerun measures the same software; uvloop 0.22+ breaks MLServer 1.7's workers.
VENV_SPECS = {
    "mlserver": [
        "mlserver==1.7.1",
        "mlserver-sklearn==1.7.1",
        "uvloop<0.22",
        f"scikit-learn=={sklearn.__version__}",
    ],
    "seed": [
        "alibi-detect==0.13.0",
        "torch<3",
        "fastapi",
        "uvicorn[standard]",
        "skops",
        f"scikit-learn=={sklearn.__version__}",
    ],
}


def log(message: str) -> None:
    """Progress on stderr (stdout ends with the JSON line)."""
    print(f"[bench-runtime] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_venv(venv_dir: Path, name: str) -> tuple[Path | None, str | None]:
    """A virtualenv with VENV_SPECS[name] installed: (its python, None) or (None, why not)."""
    venv = venv_dir / f"{name}-venv"
    stamp = venv / ".bench-spec"
    spec = "\n".join(VENV_SPECS[name])
    python = venv / "bin" / "python"
    if stamp.exists() and stamp.read_text() == spec and python.exists():
        return python, None
    log(f"installing the {name} virtualenv in {venv} (first run only)")
    if venv.is_symlink() and not venv.exists():
        venv.unlink()  # a link to a virtualenv that was removed
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            + VENV_SPECS[name],
            capture_output=True,
            text=True,
            timeout=3600,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot create the {name} virtualenv: {exc}"
    if done.returncode != 0:
        return None, f"pip install {' '.join(VENV_SPECS[name])} failed: {done.stderr[-600:]}"
    stamp.write_text(spec)
    return python, None


def held_out_rows(reference: np.ndarray) -> np.ndarray:
    """Breast-cancer rows that are not in the reference (the training split)."""
    seen = {row.tobytes() for row in reference}
    data = load_breast_cancer().data
    return np.array([row for row in data if row.tobytes() not in seen])


def wrk_script(path: str, bodies: list[str], out: Path) -> Path:
    """A wrk Lua script that POSTs the bodies in turn and prints a JSON summary line."""
    table = ",\n".join(f"  [==[{body}]==]" for body in bodies)
    script = f"""
local bodies = {{
{table}
}}
local i = 0
local headers = {{["Content-Type"] = "application/json"}}
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "{path}", headers, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
    out.write_text(textwrap.dedent(script))
    return out


@dataclass
class Variant:
    """How to start one server and what to send it."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready_url: str
    path: str
    bodies: list[str]
    cwd: Path | None = None
    error: str | None = None


@dataclass
class Running:
    """A started server process (its own process group)."""

    process: subprocess.Popen[bytes]
    ready_s: float
    log_file: Path

    def tree(self) -> list[int]:
        """The server's pid and all its descendants'."""
        pids, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo.extend(int(c) for c in task.read_text().split())
                except OSError:
                    continue
        return pids

    def cpu_s(self) -> float:
        """User+system CPU seconds used so far by the server's process tree."""
        total = 0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / CLK_TCK

    def rss_mb(self) -> float:
        """Resident memory of the server's process tree, MiB."""
        total_kb = 0
        for pid in self.tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        return round(total_kb / 1024, 1)

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL what is left."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


def start(variant: Variant, core: str | None, workdir: Path, timeout_s: float = 180) -> Running:
    """Start a variant pinned to ``core`` and wait until its readiness URL answers 200."""
    log_file = workdir / f"{variant.name}.log"
    command = (["taskset", "-c", core] if core else []) + variant.command
    started = time.monotonic()
    with log_file.open("ab") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **variant.env},
            cwd=variant.cwd,
            start_new_session=True,
        )
    running = Running(process, 0.0, log_file)
    while time.monotonic() - started < timeout_s:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(variant.ready_url, timeout=2) as resp:
                if resp.status == 200:
                    running.ready_s = round(time.monotonic() - started, 3)
                    return running
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    running.stop()
    tail = log_file.read_text(errors="replace")[-1500:]
    raise RuntimeError(f"{variant.name} did not become ready: {tail}")


def run_wrk(url: str, script: Path, conc: int, duration_s: float, core: str | None) -> dict:
    """One wrk run; its summary (requests, latency percentiles, errors)."""
    command = (["taskset", "-c", core] if core else []) + [
        "wrk",
        "-t1",
        f"-c{conc}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    summary: dict[str, Any] = json.loads(line[len("BENCH ") :])
    summary["non_2xx"] = summary.pop("status")
    summary["errors"] = sum(summary[k] for k in ("connect", "read", "write", "timeout"))
    summary["rps"] = round(summary["requests"] / (summary["duration_us"] / 1e6), 1)
    return summary


def measure(
    variant: Variant,
    running: Running,
    url: str,
    script: Path,
    conc: int,
    duration_s: float,
    core: str | None,
) -> dict[str, Any]:
    """Warm up, then one measured wrk run with the server's CPU time per request."""
    run_wrk(url, script, conc, min(1.0, duration_s), core)
    cpu_before = running.cpu_s()
    summary = run_wrk(url, script, conc, duration_s, core)
    cpu = running.cpu_s() - cpu_before
    ok = summary["requests"] - summary["non_2xx"]
    summary["cpu_us_per_req"] = round(cpu / ok * 1e6, 1) if ok else None
    if variant.name == "drift_on":
        summary["drift"] = drift_state(url.rsplit("/", 1)[0] + "/drift")
    return summary


def drift_state(url: str) -> dict[str, Any]:
    """Checks run and skipped so far by the runtime's drift monitor."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    keys = ("checks", "checks_skipped", "last_check_ms", "window_size", "check_every", "drift")
    return {key: body.get(key) for key in keys}


def build_variants(
    workdir: Path, model_dir: Path, rows: np.ndarray, venv_dir: Path, names: list[str]
) -> dict[str, Variant]:
    """Commands, bodies and readiness URLs of the variants to run."""
    runtime_bodies = [json.dumps({"features": row.tolist()}) for row in rows]
    variants: dict[str, Variant] = {}
    runtime_cli = str(VENV_BIN / "aiops-runtime")
    for name in names:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = [runtime_cli, "serve", "--model-dir", str(model_dir), "--host", "127.0.0.1"]
        serve += ["--port", str(port)]
        if name == "floor":
            command = [sys.executable, str(BENCH / "runtime_floor.py"), "--port", str(port)]
            variants[name] = Variant(
                name, command, {}, f"{base}/readyz", "/predict", runtime_bodies
            )
        elif name in ("drift_on", "drift_off"):
            env = {"DRIFT_ENABLED": "true" if name == "drift_on" else "false"}
            variants[name] = Variant(name, serve, env, f"{base}/readyz", "/predict", runtime_bodies)
        elif name == "seed":
            python, error = ensure_venv(venv_dir, "seed")
            command = [str(python), str(BENCH / "runtime_seed_server.py"), "--port", str(port)]
            command += ["--model-dir", str(model_dir)]
            variants[name] = Variant(
                name, command, {}, f"{base}/readyz", "/predict", runtime_bodies, error=error
            )
        elif name == "mlserver":
            variants[name] = mlserver_variant(workdir, model_dir, rows, venv_dir, port)
    return variants


def mlserver_variant(
    workdir: Path, model_dir: Path, rows: np.ndarray, venv_dir: Path, port: int
) -> Variant:
    """MLServer serving the model as joblib (what mlserver-sklearn loads) on the V2 protocol."""
    import joblib
    import skops.io as sio

    from aiops_runtime.model_store import TRUSTED_TYPES

    python, error = ensure_venv(venv_dir, "mlserver")
    root = workdir / "mlserver"
    model_root = root / MLSERVER_MODEL
    model_root.mkdir(parents=True, exist_ok=True)
    model = sio.load(model_dir / "model.skops", trusted=TRUSTED_TYPES)
    joblib.dump(model, model_root / "model.joblib")
    (model_root / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MLSERVER_MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    (root / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
            }
        )
    )
    bodies = [
        json.dumps(
            {
                "inputs": [
                    {"name": "input-0", "shape": [1, 30], "datatype": "FP64", "data": row.tolist()}
                ],
                "outputs": [{"name": "predict_proba"}],
            }
        )
        for row in rows
    ]
    mlserver = str(python.parent / "mlserver") if python else "mlserver"
    return Variant(
        "mlserver",
        [mlserver, "start", str(root)],
        {},
        f"http://127.0.0.1:{port}/v2/models/{MLSERVER_MODEL}/ready",
        f"/v2/models/{MLSERVER_MODEL}/infer",
        bodies,
        cwd=root,
        error=error,
    )


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return round(a / b, digits) if a is not None and b else None


@dataclass
class Results:
    """Every measurement, by variant and concurrency."""

    runs: dict[str, dict[int, list[dict[str, Any]]]] = field(default_factory=dict)
    ready_s: dict[str, list[float]] = field(default_factory=dict)
    rss_mb: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def med(self, variant: str, conc: int, key: str) -> float | None:
        return median([r.get(key) for r in self.runs.get(variant, {}).get(conc, [])])


def run_round(
    variants: dict[str, Variant],
    order: list[str],
    conc_levels: list[int],
    duration_s: float,
    cores: tuple[str | None, str | None],
    workdir: Path,
    results: Results,
) -> None:
    """Start every variant (idle servers cost nothing), then at each concurrency load them in
    turn, so the runs compared with each other are seconds apart, not minutes."""
    server_core, wrk_core = cores
    servers: dict[str, Running] = {}
    try:
        for name in order:
            variant = variants[name]
            if variant.error or name in results.errors:
                results.errors.setdefault(name, variant.error or "")
                continue
            try:
                servers[name] = start(variant, server_core, workdir)
            except RuntimeError as exc:
                results.errors[name] = str(exc)
                log(f"{name}: {exc}")
                continue
            results.ready_s.setdefault(name, []).append(servers[name].ready_s)
        for conc in conc_levels:
            for name, running in servers.items():
                variant = variants[name]
                script = wrk_script(variant.path, variant.bodies, workdir / f"{name}.lua")
                url = variant.ready_url.split("/", 3)
                base = f"{url[0]}//{url[2]}{variant.path}"
                summary = measure(variant, running, base, script, conc, duration_s, wrk_core)
                results.runs.setdefault(name, {}).setdefault(conc, []).append(summary)
                log(
                    f"{name:9s} c={conc:<3d} {summary['rps']:>9.1f} req/s  "
                    f"p99 {summary['p99_us'] / 1000:8.2f} ms  cpu/req "
                    f"{summary['cpu_us_per_req']} us  non2xx {summary['non_2xx']} "
                    f"err {summary['errors']}"
                )
        for name, running in servers.items():
            results.rss_mb.setdefault(name, []).append(running.rss_mb())
    finally:
        for running in servers.values():
            running.stop()


def final_report(results: Results, args: argparse.Namespace, cores: tuple[Any, Any]) -> dict:
    """The JSON line: the issue's keys first, then every median and the run's conditions."""
    rps: Callable[[str, int], float | None] = lambda v, c: results.med(v, c, "rps")  # noqa: E731
    p99: Callable[[str, int], float | None] = lambda v, c: (  # noqa: E731
        None if (x := results.med(v, c, "p99_us")) is None else round(x / 1000, 3)
    )
    report: dict[str, Any] = {
        "rps_floor_c16": rps("floor", 16),
        "rps_drift_on_c16": rps("drift_on", 16),
        "rps_drift_off_c16": rps("drift_off", 16),
        "rps_seed_c16": rps("seed", 16),
        "rps_mlserver_c16": rps("mlserver", 16),
        "p99_ms_floor_c64": p99("floor", 64),
        "p99_ms_drift_on_c64": p99("drift_on", 64),
        "ratio_drift_on_vs_floor_c16": ratio(rps("drift_on", 16), rps("floor", 16)),
        "ratio_vs_mlserver_c16": ratio(rps("drift_on", 16), rps("mlserver", 16)),
        "ratio_vs_seed_c16": ratio(rps("drift_on", 16), rps("seed", 16), 1),
        "ratio_p99_drift_on_vs_floor_c64": ratio(p99("drift_on", 64), p99("floor", 64)),
        "ready_s": median(results.ready_s.get("drift_on", [])),
        "rss_mb": median(results.rss_mb.get("drift_on", [])),
        # Server CPU time per request: the same comparison, less sensitive to other load.
        "cpu_ratio_drift_on_vs_floor_c16": ratio(
            results.med("floor", 16, "cpu_us_per_req"),
            results.med("drift_on", 16, "cpu_us_per_req"),
        ),
        "cpu_ratio_drift_off_vs_floor_c16": ratio(
            results.med("floor", 16, "cpu_us_per_req"),
            results.med("drift_off", 16, "cpu_us_per_req"),
        ),
    }
    table: dict[str, Any] = {}
    for variant, by_conc in results.runs.items():
        table[variant] = {
            f"c{conc}": {
                key: results.med(variant, conc, key)
                for key in ("rps", "p50_us", "p99_us", "cpu_us_per_req", "non_2xx", "errors")
            }
            for conc in by_conc
        }
    report["medians"] = table
    report["drift_on_monitor_after_each_run"] = [
        {"c": conc, **run["drift"]}
        for conc, runs in results.runs.get("drift_on", {}).items()
        for run in runs
        if "drift" in run
    ]
    report["ready_s_by_variant"] = {k: median(v) for k, v in results.ready_s.items()}
    report["rss_mb_by_variant"] = {k: median(v) for k, v in results.rss_mb.items()}
    report["variant_errors"] = results.errors
    report["conditions"] = {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "concurrency": args.conc,
        "server_core": cores[0],
        "wrk_core": cores[1],
        "wrk_threads": 1,
        "requests": "one held-out row per request, rotating over the held-out split",
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "mlserver": " ".join(VENV_SPECS["mlserver"]) + " (defaults: 1 parallel worker)",
        "seed": " ".join(VENV_SPECS["seed"]),
    }
    return report


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument(
        "--conc", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64]
    )
    parser.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    parser.add_argument("--venv-dir", type=Path, default=DEFAULT_VENV_DIR)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        print(json.dumps({"error": f"missing {missing}; run `make system-deps`"}))
        return 1
    cpus = sorted(os.sched_getaffinity(0))
    cores = (str(cpus[1]), str(cpus[0])) if len(cpus) >= 2 else (None, None)
    results = Results()
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        workdir = Path(tmp)
        model_dir = workdir / "model"
        train(model_dir, seed=42)
        rows = held_out_rows(np.load(model_dir / "reference.npy"))
        variants = build_variants(workdir, model_dir, rows, args.venv_dir, args.variants)
        for number in range(args.rounds):
            order = list(variants) if number % 2 == 0 else list(reversed(variants))
            log(f"round {number + 1}/{args.rounds}: {', '.join(order)}")
            run_round(variants, order, args.conc, args.duration, cores, workdir, results)
    print(json.dumps(final_report(results, args, cores)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
