#!/usr/bin/env python3
"""Point a ModelService YAML at newly trained artifacts (and optionally a new runtime image).

Used by the GitLab CI job `retrain-model`:

    hack/bump-modelservice.py --file examples/modelservice.yaml \\
        --manifest out/manifest.json --image registry/aiops-quality-runtime:abc123

Rewrites spec.model.sha256 and spec.model.reference.sha256 from the training manifest, and
spec.image when --image is given, in place: only those scalars change, comments and layout stay.
Prints one line saying what changed; exit status 0, or 2 when the file lacks a field.
It lives in hack/ because it is repository tooling, not part of the runtime or operator packages.
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


def targets_from(manifest: dict, image: str | None) -> dict[tuple[str, ...], str]:
    """The field paths to set and their new values."""
    targets = {
        ("spec", "model", "sha256"): manifest["model"]["sha256"],
        ("spec", "model", "reference", "sha256"): manifest["reference"]["sha256"],
    }
    if image:
        targets[("spec", "image")] = image
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


def bump(path: Path, manifest: dict, image: str | None) -> list[str]:
    """Rewrite the file in place; returns the changed fields (empty when already up to date)."""
    text = path.read_text()
    targets = targets_from(manifest, image)
    new_text = rewrite(text, targets)
    before = yaml.safe_load(text)
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


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, required=True, help="ModelService YAML to rewrite")
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.json of training")
    parser.add_argument("--image", help="new spec.image (runtime image reference)")
    args = parser.parse_args(argv)
    manifest = json.loads(args.manifest.read_text())
    try:
        changed = bump(args.file, manifest, args.image)
    except (BumpError, KeyError, TypeError) as exc:
        print(f"error: {args.file}: {exc}", file=sys.stderr)
        return 2
    if changed:
        digest = manifest["model"]["sha256"]
        print(f"{args.file}: updated {', '.join(changed)} (model sha256 {digest})")
    else:
        print(f"{args.file}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
