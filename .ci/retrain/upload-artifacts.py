#!/usr/bin/env python3
"""Upload trained artifacts to a GitLab generic package, where the runtime downloads them.

Used by the GitLab CI job `retrain-model`:

    .ci/retrain/upload-artifacts.py --manifest retrained/manifest.json \\
        --url "$CI_API_V4_URL/projects/$CI_PROJECT_ID/packages/generic/<package>/<version>"

PUTs the model, the reference, the calibration (when training wrote one) and the manifest
named by the manifest (GitLab's generic package API, authenticated by the header
`JOB-TOKEN: $CI_JOB_TOKEN`), checks each file's sha256 against the manifest first, and prints
the base URL on its last line. Exit status 0, or 1 when an upload is refused or a digest does
not match. A package version is immutable by convention: the job names it after the model's
digest, so a retry uploads the same bytes to the same place.
Standard library only: it runs in the runtime image.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def files_of(manifest_path: Path) -> list[Path]:
    """The model, the reference, the calibration when training wrote one (each checked against
    its digest) and the manifest."""
    manifest = json.loads(manifest_path.read_text())
    files = []
    for kind in ("model", "reference", "calibration"):
        if kind == "calibration" and kind not in manifest:
            continue
        path = manifest_path.parent / manifest[kind]["file"]
        digest, pinned = hashlib.sha256(path.read_bytes()).hexdigest(), manifest[kind]["sha256"]
        if digest != pinned:
            raise ValueError(f"{path}: sha256 {digest}, the manifest says {pinned}")
        files.append(path)
    return [*files, manifest_path]


def upload(url: str, path: Path, token: str, timeout_s: float) -> None:
    """PUT one file; raises urllib.error.URLError (HTTPError) when it is not accepted."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/{path.name}", data=path.read_bytes(), method="PUT",
        headers={"JOB-TOKEN": token, "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout_s) as resp:
        resp.read()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.json of training")
    parser.add_argument("--url", required=True, help="the generic package version's base URL")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per file")
    args = parser.parse_args(argv)
    token = os.environ.get("CI_JOB_TOKEN", "")
    if not token:
        print("error: CI_JOB_TOKEN is not set", file=sys.stderr)
        return 1
    try:
        for path in files_of(args.manifest):
            upload(args.url, path, token, args.timeout)
            print(f"uploaded {path.name} ({path.stat().st_size} bytes)")
    except (ValueError, OSError) as exc:  # urllib's errors are OSErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(args.url.rstrip("/"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
