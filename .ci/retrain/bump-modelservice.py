#!/usr/bin/env python3
"""Point a ModelService YAML at newly trained artifacts (and optionally a new runtime image).

Used by the GitLab CI job `retrain-model`, which names the ModelService its trigger named:

    .ci/retrain/bump-modelservice.py --dir examples --default-namespace aiops-quality \\
        --name breast-cancer --namespace aiops-quality --manifest out/manifest.json \\
        --image registry/aiops-quality-runtime:abc123 \\
        --artifacts-url https://gitlab.example/api/v4/projects/42/packages/generic/x/28356685ef42

or given one file: `--file examples/modelservice.yaml --manifest out/manifest.json`.

Rewrites spec.model.sha256, spec.model.reference.sha256 (and spec.model.calibration.sha256 when
the file pins a calibration) from the training manifest,
spec.image when --image is given, and with --artifacts-url the two URIs (<url>/<file name the
manifest gives>), in place: only those scalars change, comments and layout stay. With --dir it
first finds the one `modelservice*.yaml` there (the files Argo CD syncs) whose metadata names
that ModelService; a file without metadata.namespace lands in --default-namespace (the
Application's destination). Prints one line saying what changed; exit status 0, or 2 when there
is no such ModelService or it lacks a field.
It lives in .ci/retrain/, beside the pipeline whose retrain-model job runs it (tests: tests/ci/).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import yaml

# key: value  # comment    (block-style mapping entries; values here are plain scalars)
_ENTRY = re.compile(
    r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?P<sep>\s*)(?P<value>[^#]*?)(?P<rest>\s+#.*)?$"
)


class BumpError(Exception):
    """The YAML does not have the shape the bump expects."""


def targets_from(
    manifest: dict, image: str | None, artifacts_url: str | None = None
) -> dict[tuple[str, ...], str]:
    """The field paths to set and their new values."""
    targets = {
        ("spec", "model", "sha256"): manifest["model"]["sha256"],
        ("spec", "model", "reference", "sha256"): manifest["reference"]["sha256"],
    }
    if "calibration" in manifest:
        targets[("spec", "model", "calibration", "sha256")] = manifest["calibration"]["sha256"]
    if image:
        targets[("spec", "image")] = image
    if artifacts_url:
        base = artifacts_url.rstrip("/")
        targets[("spec", "model", "uri")] = f"{base}/{manifest['model']['file']}"
        targets[("spec", "model", "reference", "uri")] = f"{base}/{manifest['reference']['file']}"
        if "calibration" in manifest:
            calibration_uri = f"{base}/{manifest['calibration']['file']}"
            targets[("spec", "model", "calibration", "uri")] = calibration_uri
    return targets


def rewrite(text: str, targets: dict[tuple[str, ...], str]) -> str:
    """The YAML text with each target path's scalar replaced; raises BumpError if one is missing."""
    stack: list[tuple[int, str]] = []
    found: set[tuple[str, ...]] = set()
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#") or body.strip() == "---":
            if body.strip() == "---":
                stack.clear()
            continue
        match = _ENTRY.match(body)
        if match is None:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key in stack), match["key"])
        if path in targets:
            if not match["value"]:
                raise BumpError(f"{'.'.join(path)} is not a scalar (line {number + 1})")
            ending = line[len(body) :]
            lines[number] = (
                f"{match['indent']}{match['key']}:{match['sep'] or ' '}{targets[path]}"
                f"{match['rest'] or ''}{ending}"
            )
            found.add(path)
        if not match["value"]:
            stack.append((indent, match["key"]))
    missing = [".".join(p) for p in targets if p not in found]
    if missing:
        raise BumpError(f"missing field(s): {', '.join(missing)}")
    return "".join(lines)


def _get(doc: dict, path: tuple[str, ...]) -> object:
    for key in path:
        doc = doc[key]
    return doc


def bump(
    path: Path, manifest: dict, image: str | None, artifacts_url: str | None = None
) -> list[str]:
    """Rewrite the file in place; returns the changed fields (empty when already up to date)."""
    text = path.read_text()
    targets = targets_from(manifest, image, artifacts_url)
    before = yaml.safe_load(text)
    if "calibration" not in ((before.get("spec") or {}).get("model") or {}):
        # A ModelService that pins no calibration keeps running uncalibrated (its choice).
        targets = {p: v for p, v in targets.items() if "calibration" not in p}
    new_text = rewrite(text, targets)
    changed = [".".join(p) for p, value in targets.items() if str(_get(before, p)) != value]
    # The edit is textual; check it means what we wanted and nothing else moved.
    after = yaml.safe_load(new_text)
    for target, value in targets.items():
        if str(_get(after, target)) != value:
            raise BumpError(f"{'.'.join(target)} did not take the new value")
    if changed:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new_text)
        os.replace(tmp, path)
    return changed


def locate(directory: Path, name: str, namespace: str, default_namespace: str) -> Path:
    """The one modelservice*.yaml in `directory` that holds ModelService namespace/name."""
    found = []
    for path in sorted(directory.glob("modelservice*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
        for doc in docs:
            meta = doc.get("metadata") or {}
            if (
                doc.get("kind") == "ModelService"
                and meta.get("name") == name
                and (meta.get("namespace") or default_namespace) == namespace
            ):
                if len(docs) > 1:
                    raise BumpError(f"{path} holds {namespace}/{name} among other documents")
                found.append(path)
    if not found:
        raise BumpError(f"no ModelService {namespace}/{name} in {directory}/modelservice*.yaml")
    if len(found) > 1:
        raise BumpError(f"ModelService {namespace}/{name} is in {len(found)} files: {found}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--file", type=Path, help="ModelService YAML to rewrite")
    where.add_argument("--dir", type=Path, help="find the ModelService (--name) in this dir")
    parser.add_argument("--name", help="with --dir: the ModelService's metadata.name")
    parser.add_argument("--namespace", help="with --dir: its namespace")
    parser.add_argument("--default-namespace", help="with --dir: where a file without one lands")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.json of training")
    parser.add_argument("--image", help="new spec.image (runtime image reference)")
    parser.add_argument("--artifacts-url", help="where the trained files were uploaded")
    args = parser.parse_args(argv)
    if args.dir and not (args.name and args.namespace and args.default_namespace):
        parser.error("--dir needs --name, --namespace and --default-namespace")
    manifest = json.loads(args.manifest.read_text())
    path = args.file or args.dir
    try:
        if args.dir:
            path = locate(args.dir, args.name, args.namespace, args.default_namespace)
        changed = bump(path, manifest, args.image, args.artifacts_url)
    except (BumpError, KeyError, TypeError, yaml.YAMLError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    if changed:
        digest = manifest["model"]["sha256"]
        print(f"{path}: updated {', '.join(changed)} (model sha256 {digest})")
    else:
        print(f"{path}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
