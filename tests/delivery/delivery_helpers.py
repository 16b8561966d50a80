"""Helpers shared by the delivery tests (commands, YAML, paths)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiops_harness.localcluster import ClusterError

REPO_ROOT = Path(__file__).resolve().parents[2]
CHARTS = REPO_ROOT / "charts"
OPERATOR_CHART = CHARTS / "aiops-operator"
MONITORING_CHART = CHARTS / "aiops-monitoring"
# The umbrella's dependencies cannot be fetched here; our own templates render without them.
NO_DEPENDENCIES = ["--set", "loki.enabled=false,alloy.enabled=false,grafana.enabled=false"]


def run(
    *args: str | Path, input: str | None = None, check: bool = True, timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; on failure the message carries stdout and stderr."""
    proc = subprocess.run(
        [str(a) for a in args], input=input, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


def load_all(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a multi-document string."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def stop(proc: subprocess.Popen[Any], timeout_s: float = 10) -> None:
    """Terminate a process we started, then kill it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)


def apply_crd(cluster: Any, path: Path, timeout_s: float = 60) -> None:
    """The cluster's apply_crd (apply server-side, wait until Established); fails the test."""
    try:
        cluster.apply_crd(path, timeout_s)
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)


# --- the Alloy configuration of the monitoring chart ----------------------------------------------
# A reader for the little of Alloy's syntax our configuration uses (blocks, attributes, strings,
# lists of strings, objects of strings), so that tests can look inside it. Alloy's own parser
# (hack/alloy-syntax) checks the whole file; tests compare the two.


def alloy_config_values() -> str:
    """The Alloy configuration as values.yaml holds it (before the alloy chart's `tpl`)."""
    values = yaml.safe_load((MONITORING_CHART / "values.yaml").read_text())
    return str(values["alloy"]["alloy"]["configMap"]["content"])


_ALLOY_BLOCK = re.compile(r'([A-Za-z_][\w.]*)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\{')


def _alloy_skip(text: str, i: int) -> int | None:
    """The index just past the comment or string starting at i, or None if none starts there."""
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text.startswith("/*", i):
        return text.index("*/", i) + 2
    if text[i] == "`":
        return text.index("`", i + 1) + 1
    if text[i] == '"':
        j = i + 1
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return None


def _alloy_walk(text: str) -> list[tuple[int, str]]:
    """(index, character) of every character outside comments and strings."""
    out, i = [], 0
    while i < len(text):
        skip = _alloy_skip(text, i)
        if skip is None:
            out.append((i, text[i]))
            i += 1
        else:
            out.append((i, "\0"))  # a string or comment: a token boundary, nothing to count
            i = skip
    return out


def alloy_blocks(text: str, name: str | None = None) -> list[tuple[str, str, str]]:
    """(name, label, body) of the blocks directly in text (not nested deeper), in order; only
    those called name if it is given. Blocks without a label have label ""."""
    found: list[tuple[str, str, str]] = []
    depth, start = 0, None
    for i, char in _alloy_walk(text):
        if char == "{":
            if depth == 0:
                line_start = text.rfind("\n", 0, i) + 1
                start = (line_start, i)
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0 and start is not None:
                header = _ALLOY_BLOCK.fullmatch(text[start[0] : start[1] + 1].strip())
                if header and (name is None or header.group(1) == name):
                    found.append((header.group(1), header.group(2) or "", text[start[1] + 1 : i]))
                start = None
    return found


def alloy_attribute(body: str, name: str) -> str:
    """The expression (source text) of attribute name directly in a block body."""
    target = re.compile(rf"(?<![\w.]){re.escape(name)}\s*=(?!=)")
    depth, value_start = 0, None
    for i, char in _alloy_walk(body):
        if value_start is None and depth == 0 and (m := target.match(body, i)):
            value_start = m.end()
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif char == "\n" and depth == 0 and value_start is not None and i > value_start:
            return body[value_start:i].strip()
    if value_start is None:
        raise KeyError(f"no attribute {name!r} in {body!r}")
    return body[value_start:].strip()


def alloy_string(expr: str) -> str:
    """The value of a string literal."""
    value = json.loads(expr)
    assert isinstance(value, str), expr
    return value


def alloy_strings(expr: str) -> list[str]:
    """The values of a list of string literals."""
    return [alloy_string(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', expr)]


def alloy_object(expr: str) -> dict[str, str]:
    """An object whose fields are string literals, as a dict."""
    assert expr.startswith("{"), expr
    assert expr.endswith("}"), expr
    fields = re.findall(r'(\w+)\s*=\s*("(?:[^"\\]|\\.)*")', expr)
    return {key: alloy_string(value) for key, value in fields}


def job_script(job: dict[str, Any], inputs: dict[str, str]) -> str:
    """A job's script as GitLab runs it: its lines in order, `$[[ inputs.x ]]` interpolated
    (GitLab does that when it creates the pipeline)."""
    script = "\n".join(job["script"]) + "\n"
    for name, value in inputs.items():
        script = script.replace(f"$[[ inputs.{name} ]]", value)
    assert "$[[" not in script, "every input the script uses is given"
    return script
