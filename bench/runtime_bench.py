"""Runtime throughput and latency vs a floor, the seed design and peer model servers
(make bench-runtime).

Each variant is a real server process pinned to one core; wrk (Debian's package) loads it from
another core with a rotation of held-out breast-cancer rows (one row per request), c = 1, 16, 64,
for DURATION seconds each, in ROUNDS alternating rounds (order reversed every other round); figures
are medians over rounds. Every server serves examples/models/breast-cancer (the peers a joblib dump
of the same skops model) on its own protocol with its default settings, and must answer the first
row with the model's probabilities before it is measured. Variants (VARIANTS):

  floor             bench/runtime_floor.py: same stack and validation, constant answer
  drift_on          aiops-runtime serve, drift detection on (the default settings), POST /predict
  drift_off         aiops-runtime serve, DRIFT_ENABLED=false
  oip               aiops-runtime serve, drift on, Open Inference Protocol /v2/models/model/infer
  seed              bench/runtime_seed_server.py: alibi-detect MMD on the last 100 rows per request
  mlserver          MLServer + mlserver-sklearn, V2 inference protocol
  kserve_v1         KServe ModelServer (bench/runtime_kserve_server.py), /v1/models/NAME:predict
  kserve_v2         the same server, /v2/models/NAME/infer
  bentoml           BentoML service (bench/runtime_bentoml_service.py), one worker
  granian_floor     the floor app under Granian instead of uvicorn
  granian_drift_on  the runtime's app (drift on) under Granian, POST /predict

The peers run in their own virtualenvs (VENV_SPECS, created under --venv-dir on first use, never in
the repository's venv); one that cannot be built is reported null with the reason. The server's
own CPU time per request is reported beside the throughput: it is less sensitive than req/s to
other load on the machine. The last line printed is one JSON object with every figure, the ratios
of RATIOS and whether each of TARGETS is met.
"""

from __future__ import annotations

import argparse
import itertools
import json
import operator
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
DEFAULT_VENV_DIR = Path.home() / ".cache" / "aiops-quality" / "bench-venvs"
MODEL_DIR = REPO / "examples" / "models" / "breast-cancer"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PEER_MODEL = "breast-cancer"
# The runtime's MODEL_NAME default, the {name} of its Open Inference Protocol routes.
RUNTIME_MODEL = "model"
# The floor's constant answer.
FLOOR_PROBA = [0.5, 0.5]
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
    "kserve": ["kserve==0.21.0", f"scikit-learn=={sklearn.__version__}"],
    "bentoml": ["bentoml==1.4.40", f"scikit-learn=={sklearn.__version__}"],
    "granian": ["granian[uvloop]==2.8.9"],
    # Ours as the image installs it (Dockerfile.runtime): the hash-locked runtime dependencies
    # and nothing else. The development .venv also holds the test extras (pytest, rich, pandas
    # for the kserve client), which scikit-learn and skops import when present: +40 MB of RSS
    # that no deployment has. The runtime's code itself comes from this checkout (PYTHONPATH).
    "shipped": ["--require-hashes", "--no-deps", "-r", str(REPO / "runtime" / "requirements.lock")],
}
# The distributions whose versions the report names, by virtualenv ("ours": the repository's).
VERSIONS = {
    "ours": ("aiops-runtime", "fastapi", "uvicorn", "scikit-learn"),
    "mlserver": ("mlserver", "mlserver-sklearn"),
    "kserve": ("kserve",),
    "bentoml": ("bentoml",),
    "granian": ("granian",),
}
# The headline ratios: requests/s at c=16 of the first variant over the second's.
RATIOS = {
    "ratio_drift_on_vs_floor_c16": ("drift_on", "floor"),
    "ratio_vs_kserve_c16": ("drift_on", "kserve_v1"),
    "ratio_vs_kserve_v2_c16": ("drift_on", "kserve_v2"),
    "ratio_vs_bentoml_c16": ("drift_on", "bentoml"),
    "ratio_vs_mlserver_c16": ("drift_on", "mlserver"),
    "ratio_vs_seed_c16": ("drift_on", "seed"),
    "ratio_oip_vs_predict_c16": ("oip", "drift_on"),
    "ratio_oip_vs_kserve_v2_c16": ("oip", "kserve_v2"),
    "ratio_granian_vs_uvicorn_floor_c16": ("granian_floor", "floor"),
    "ratio_granian_vs_uvicorn_drift_on_c16": ("granian_drift_on", "drift_on"),
}
# Issue 16's targets: report key, comparison, bound.
TARGETS: dict[str, tuple[Callable[[float, float], bool], float]] = {
    "ratio_drift_on_vs_floor_c16": (operator.ge, 0.85),
    "ratio_vs_kserve_c16": (operator.ge, 4.0),
    "ratio_vs_bentoml_c16": (operator.ge, 10.0),
    "ratio_vs_mlserver_c16": (operator.ge, 8.0),
    "ratio_oip_vs_predict_c16": (operator.ge, 0.8),
    "ratio_oip_vs_kserve_v2_c16": (operator.ge, 4.0),
    "ratio_p99_drift_on_vs_floor_c64": (operator.le, 1.5),
    "ready_s": (operator.le, 3.0),
    "rss_mb": (operator.le, 200.0),
}


def _v2_input(name: str, row: list[float]) -> dict[str, Any]:
    return {"name": name, "shape": [1, len(row)], "datatype": "FP64", "data": row}


def _v2_output(doc: Any, name: str | None = None) -> list[float]:
    outputs = doc["outputs"]
    tensor = outputs[0] if name is None else next(o for o in outputs if o["name"] == name)
    return list(tensor["data"])


@dataclass(frozen=True)
class Protocol:
    """A request body for one row, and where the answer holds its class probabilities."""

    body: Callable[[list[float]], Any]
    probabilities: Callable[[Any], list[float]]


PROTOCOLS = {
    "predict": Protocol(lambda row: {"features": row}, lambda doc: doc["probabilities"][0]),
    # The seed design's /predict answers one row's probabilities unnested.
    "seed": Protocol(lambda row: {"features": row}, lambda doc: doc["probabilities"]),
    "oip": Protocol(
        lambda row: {"inputs": [_v2_input("features", row)]},
        lambda doc: _v2_output(doc, "probabilities"),
    ),
    "mlserver": Protocol(
        lambda row: {"inputs": [_v2_input("input-0", row)], "outputs": [{"name": "predict_proba"}]},
        _v2_output,
    ),
    "kserve_v1": Protocol(lambda row: {"instances": [row]}, lambda doc: doc["predictions"][0]),
    "kserve_v2": Protocol(lambda row: {"inputs": [_v2_input("input-0", row)]}, _v2_output),
    "bentoml": Protocol(lambda row: {"features": [row]}, lambda doc: doc[0]),
}


def request_bodies(protocol: str, rows: np.ndarray) -> list[str]:
    """One JSON body per row, in the protocol's shape."""
    return [json.dumps(PROTOCOLS[protocol].body(row.tolist())) for row in rows]


def answer_error(protocol: str, status: int, body: bytes, expected: list[float]) -> str | None:
    """Why an answer to the first body is wrong (not 200, or not ``expected``), or None."""
    if status != 200:
        return f"answered {status}: {body[:300]!r}"
    try:
        got = [float(x) for x in PROTOCOLS[protocol].probabilities(json.loads(body))]
    except (ValueError, KeyError, IndexError, TypeError, StopIteration) as exc:
        return f"no probabilities in the answer ({exc!r}): {body[:300]!r}"
    if len(got) != len(expected) or not np.allclose(got, expected, rtol=0, atol=1e-9):
        return f"probabilities {got}, expected {expected}"
    return None


def log(message: str) -> None:
    """Progress on stderr (stdout ends with the JSON line)."""
    print(f"[bench-runtime] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_stamp(args: list[str]) -> str:
    """What a virtualenv was built from: its pip arguments and the text of each requirements
    file among them (a changed lock builds the virtualenv again)."""
    files = [Path(f).read_text() for flag, f in itertools.pairwise(args) if flag == "-r"]
    return "\n".join(args + files)


def ensure_venv(venv_dir: Path, name: str) -> tuple[Path | None, str | None]:
    """A virtualenv with VENV_SPECS[name] installed: (its python, None) or (None, why not)."""
    venv = venv_dir / f"{name}-venv"
    stamp = venv / ".bench-spec"
    spec = venv_stamp(VENV_SPECS[name])
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
    protocol: str
    cwd: Path | None = None
    error: str | None = None
    # The answer to the first row when it is not the model's (the floor's constant).
    constant: list[float] | None = None
    bodies: list[str] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The URL wrk loads."""
        scheme, _, host = self.ready_url.split("/", 3)[:3]
        return f"{scheme}//{host}{self.path}"


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


@dataclass(frozen=True)
class Context:
    """What the variants' start functions need: where to write, the model, the virtualenvs."""

    workdir: Path
    venv_dir: Path
    joblib_dir: Path


def shipped_python(ctx: Context) -> tuple[Path, dict[str, str], str | None]:
    """The interpreter of the `shipped` virtualenv and the environment that runs this checkout's
    runtime code with it (or the error why not)."""
    python, error = ensure_venv(ctx.venv_dir, "shipped")
    return python or Path(sys.executable), {"PYTHONPATH": str(REPO / "runtime")}, error


def _runtime(
    ctx: Context, port: int, drift: bool, path: str = "/predict", protocol: str = "predict"
) -> Variant:
    python, env, error = shipped_python(ctx)
    command = [str(python), "-m", "aiops_runtime.cli", "serve", "--model-dir", str(MODEL_DIR)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env |= {"DRIFT_ENABLED": "true" if drift else "false", "MODEL_NAME": RUNTIME_MODEL}
    ready = f"http://127.0.0.1:{port}/readyz"
    return Variant("", command, env, ready, path, protocol, error=error)


def start_floor(ctx: Context, port: int) -> Variant:
    python, env, error = shipped_python(ctx)
    command = [str(python), str(BENCH / "runtime_floor.py"), "--port", str(port)]
    return Variant(
        "", command, env, f"http://127.0.0.1:{port}/readyz", "/predict", "predict",
        error=error, constant=FLOOR_PROBA,
    )  # fmt: skip


def start_drift_on(ctx: Context, port: int) -> Variant:
    return _runtime(ctx, port, drift=True)


def start_drift_off(ctx: Context, port: int) -> Variant:
    return _runtime(ctx, port, drift=False)


def start_oip(ctx: Context, port: int) -> Variant:
    oip = f"/v2/models/{RUNTIME_MODEL}/infer"
    return _runtime(ctx, port, drift=True, path=oip, protocol="oip")


def start_seed(ctx: Context, port: int) -> Variant:
    python, error = ensure_venv(ctx.venv_dir, "seed")
    command = [str(python), str(BENCH / "runtime_seed_server.py"), "--port", str(port)]
    command += ["--model-dir", str(MODEL_DIR)]
    ready = f"http://127.0.0.1:{port}/readyz"
    return Variant("", command, {}, ready, "/predict", "seed", error=error)


def start_mlserver(ctx: Context, port: int) -> Variant:
    """MLServer serving the joblib model (what mlserver-sklearn loads) on the V2 protocol."""
    python, error = ensure_venv(ctx.venv_dir, "mlserver")
    root = ctx.workdir / "mlserver"
    model_root = root / PEER_MODEL
    model_root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ctx.joblib_dir / "model.joblib", model_root / "model.joblib")
    settings = {
        "name": PEER_MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    (model_root / "model-settings.json").write_text(json.dumps(settings))
    server = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
    }
    (root / "settings.json").write_text(json.dumps(server))
    mlserver = str(python.parent / "mlserver") if python else "mlserver"
    return Variant(
        "",
        [mlserver, "start", str(root)],
        {},
        f"http://127.0.0.1:{port}/v2/models/{PEER_MODEL}/ready",
        f"/v2/models/{PEER_MODEL}/infer",
        "mlserver",
        cwd=root,
        error=error,
    )


def _kserve(ctx: Context, port: int, path: str, protocol: str) -> Variant:
    python, error = ensure_venv(ctx.venv_dir, "kserve")
    command = [str(python), str(BENCH / "runtime_kserve_server.py")]
    command += ["--model_dir", str(ctx.joblib_dir), "--model_name", PEER_MODEL]
    command += ["--http_port", str(port), "--grpc_port", str(free_port())]
    ready = f"http://127.0.0.1:{port}/v2/models/{PEER_MODEL}/ready"
    return Variant("", command, {}, ready, path, protocol, error=error)


def start_kserve_v1(ctx: Context, port: int) -> Variant:
    return _kserve(ctx, port, f"/v1/models/{PEER_MODEL}:predict", "kserve_v1")


def start_kserve_v2(ctx: Context, port: int) -> Variant:
    return _kserve(ctx, port, f"/v2/models/{PEER_MODEL}/infer", "kserve_v2")


def start_bentoml(ctx: Context, port: int) -> Variant:
    python, error = ensure_venv(ctx.venv_dir, "bentoml")
    bentoml = str(python.parent / "bentoml") if python else "bentoml"
    command = [bentoml, "serve", "runtime_bentoml_service:BreastCancer"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {"BENCH_MODEL_FILE": str(ctx.joblib_dir / "model.joblib")}
    ready = f"http://127.0.0.1:{port}/readyz"
    return Variant("", command, env, ready, "/predict", "bentoml", cwd=BENCH, error=error)


def _granian(ctx: Context, port: int, factory: str) -> Variant:
    """Granian (its virtualenv holds only Granian) serving an app of this repository's venv."""
    python, error = ensure_venv(ctx.venv_dir, "granian")
    granian = str(python.parent / "granian") if python else "granian"
    command = [granian, "--interface", "asgi", "--factory", "--loop", "uvloop", "--workers", "1"]
    command += ["--no-access-log", "--host", "127.0.0.1", "--port", str(port)]
    command += [f"runtime_granian_apps:{factory}"]
    paths = [str(BENCH), str(REPO / "runtime"), sysconfig.get_paths()["purelib"]]
    env = {"PYTHONPATH": os.pathsep.join(paths), "MODEL_DIR": str(MODEL_DIR)}
    env |= {"DRIFT_ENABLED": "true", "MODEL_NAME": RUNTIME_MODEL}
    ready = f"http://127.0.0.1:{port}/readyz"
    return Variant("", command, env, ready, "/predict", "predict", cwd=BENCH, error=error)


def start_granian_floor(ctx: Context, port: int) -> Variant:
    variant = _granian(ctx, port, "floor_app")
    variant.constant = FLOOR_PROBA
    return variant


def start_granian_drift_on(ctx: Context, port: int) -> Variant:
    return _granian(ctx, port, "runtime_app")


# The variants, in the order a round starts them (reversed every other round).
VARIANTS: dict[str, Callable[[Context, int], Variant]] = {
    "floor": start_floor,
    "drift_on": start_drift_on,
    "drift_off": start_drift_off,
    "oip": start_oip,
    "seed": start_seed,
    "mlserver": start_mlserver,
    "kserve_v1": start_kserve_v1,
    "kserve_v2": start_kserve_v2,
    "bentoml": start_bentoml,
    "granian_floor": start_granian_floor,
    "granian_drift_on": start_granian_drift_on,
}


def build_variants(ctx: Context, rows: np.ndarray, names: list[str]) -> dict[str, Variant]:
    """Commands, bodies, readiness URLs and expected first answers of the variants to run."""
    model = load_model()
    expected = [float(x) for x in model.predict_proba(rows[:1])[0]]
    variants: dict[str, Variant] = {}
    for name in names:
        variant = VARIANTS[name](ctx, free_port())
        variant.name = name
        variant.bodies = request_bodies(variant.protocol, rows)
        variant.expected = variant.constant or expected
        variants[name] = variant
    return variants


def load_model() -> Any:
    """The served model, as the runtime loads it."""
    import skops.io as sio

    from aiops_runtime.model_store import TRUSTED_TYPES

    return sio.load(MODEL_DIR / "model.skops", trusted=TRUSTED_TYPES)


def write_joblib(out: Path) -> Path:
    """The model as the joblib file the peers' scikit-learn servers load."""
    import joblib

    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(load_model(), out / "model.joblib")
    return out


def check_answer(variant: Variant) -> None:
    """Raise unless the server answers the first body 200 with the expected probabilities."""
    request = urllib.request.Request(
        variant.url,
        data=variant.bodies[0].encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    error = answer_error(variant.protocol, status, body, variant.expected)
    if error:
        raise RuntimeError(f"wrong answer from {variant.url}: {error}")


def venv_versions(python: Path, dists: tuple[str, ...]) -> dict[str, str]:
    """The installed versions of ``dists`` in the virtualenv of ``python``."""
    code = "import json, sys; from importlib.metadata import version as v; "
    code += "print(json.dumps({d: v(d) for d in sys.argv[1:]}))"
    done = subprocess.run([str(python), "-c", code, *dists], capture_output=True, text=True)
    if done.returncode != 0:
        return {dist: f"unknown: {done.stderr.strip()[-200:]}" for dist in dists}
    found: dict[str, str] = json.loads(done.stdout)
    return found


def versions(venv_dir: Path, names: list[str]) -> dict[str, str]:
    """The versions of the servers measured: ours and each peer's whose virtualenv exists."""
    found = {dist: version(dist) for dist in VERSIONS["ours"]}
    shipped = venv_dir / "shipped-venv" / "bin" / "python"
    if shipped.exists():  # what our variants ran on (the runtime's code is this checkout's)
        found |= venv_versions(shipped, VERSIONS["ours"][1:])
    peers = {name.split("_")[0] for name in names} & set(VERSIONS)
    for peer in sorted(peers):
        python = venv_dir / f"{peer}-venv" / "bin" / "python"
        if python.exists():
            found |= venv_versions(python, VERSIONS[peer])
    return found


def median(values: Sequence[float | None]) -> float | None:
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
    # Variants that were started but did not start or answered wrong (the exit status says so).
    failed: list[str] = field(default_factory=list)

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
                check_answer(variant)
            except RuntimeError as exc:
                results.errors[name] = str(exc)
                results.failed.append(name)
                log(f"{name} FAILED: {exc}")
                if (started := servers.pop(name, None)) is not None:
                    started.stop()
                continue
            results.ready_s.setdefault(name, []).append(servers[name].ready_s)
        for conc in conc_levels:
            for name, running in servers.items():
                variant = variants[name]
                script = wrk_script(variant.path, variant.bodies, workdir / f"{name}.lua")
                summary = measure(variant, running, variant.url, script, conc, duration_s, wrk_core)
                results.runs.setdefault(name, {}).setdefault(conc, []).append(summary)
                log(
                    f"{name:16s} c={conc:<3d} {summary['rps']:>9.1f} req/s  "
                    f"p99 {summary['p99_us'] / 1000:8.2f} ms  cpu/req "
                    f"{summary['cpu_us_per_req']} us  non2xx {summary['non_2xx']} "
                    f"err {summary['errors']}"
                )
        for name, running in servers.items():
            results.rss_mb.setdefault(name, []).append(running.rss_mb())
    finally:
        for running in servers.values():
            running.stop()


def ratios(rps_c16: Mapping[str, float | None]) -> dict[str, float | None]:
    """RATIOS from the variants' requests/s at c=16 (None where a variant has no figure)."""
    return {key: ratio(rps_c16.get(a), rps_c16.get(b)) for key, (a, b) in RATIOS.items()}


def targets_met(report: Mapping[str, Any]) -> dict[str, bool | None]:
    """Each of TARGETS: met, missed, or None when its figure is missing."""
    return {
        key: None if report.get(key) is None else bool(compare(report[key], bound))
        for key, (compare, bound) in TARGETS.items()
    }


def final_report(
    results: Results, args: argparse.Namespace, cores: tuple[Any, Any], found: dict[str, str]
) -> dict:
    """The JSON line: the issue's keys first, then every median and the run's conditions."""
    p99: Callable[[str, int], float | None] = lambda v, c: (  # noqa: E731
        None if (x := results.med(v, c, "p99_us")) is None else round(x / 1000, 3)
    )
    rps_c16 = {name: results.med(name, 16, "rps") for name in VARIANTS}
    report: dict[str, Any] = {f"rps_{name}_c16": rps for name, rps in rps_c16.items()}
    report |= ratios(rps_c16)
    report |= {
        "p99_ms_floor_c64": p99("floor", 64),
        "p99_ms_drift_on_c64": p99("drift_on", 64),
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
    report["targets_met"] = targets_met(report)
    report["versions"] = found
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
        "model": str(MODEL_DIR.relative_to(REPO)),
        "requests": "one held-out row per request, rotating over the held-out split",
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "venvs": {name: " ".join(spec) for name, spec in VENV_SPECS.items()},
        "peer_settings": "each peer's defaults: MLServer 1 parallel worker, KServe 1 worker "
        "(access and latency logs on), BentoML workers=1",
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
        ctx = Context(workdir, args.venv_dir, write_joblib(workdir / "joblib"))
        rows = held_out_rows(np.load(MODEL_DIR / "reference.npy"))
        variants = build_variants(ctx, rows, args.variants)
        for number in range(args.rounds):
            order = list(variants) if number % 2 == 0 else list(reversed(variants))
            log(f"round {number + 1}/{args.rounds}: {', '.join(order)}")
            run_round(variants, order, args.conc, args.duration, cores, workdir, results)
    print(json.dumps(final_report(results, args, cores, versions(args.venv_dir, args.variants))))
    return 1 if results.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
