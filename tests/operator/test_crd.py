"""The committed CRD and RBAC files are exactly what the code generates, and the CRD is a
structural schema a person can read with `kubectl explain`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aiops_operator.crd import build_crd, render_crd
from aiops_operator.rbac import cluster_rules, namespaced_rules, render_rules, rules

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = REPO_ROOT / "crds" / "modelservices.aiops-quality.io.yaml"
CHART_CRD_FILE = REPO_ROOT / "charts" / "aiops-operator" / "crds" / CRD_FILE.name
RBAC_FILE = REPO_ROOT / "charts" / "aiops-operator" / "files" / "rbac-rules.yaml"


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = ""):  # type: ignore[no-untyped-def]
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crd_matches_generated_output() -> None:
    assert CRD_FILE.read_text() == render_crd(), "crds/ is stale: run `make crds`"


def test_chart_crd_copy_matches_generated_output() -> None:
    assert CHART_CRD_FILE.read_text() == render_crd(), "chart CRD is stale: run `make crds`"


def test_chart_rbac_rules_match_generated_output() -> None:
    assert RBAC_FILE.read_text() == render_rules(), "rbac-rules.yaml is stale: run `make crds`"
    assert yaml.safe_load(RBAC_FILE.read_text()) == {
        "namespaced": namespaced_rules(),
        "cluster": cluster_rules(),
    }
    assert namespaced_rules() + cluster_rules() == rules()


def test_crd_names_scope_and_status_subresource() -> None:
    crd = build_crd()["spec"]
    assert crd["group"] == "aiops-quality.io"
    assert crd["names"]["kind"] == "ModelService"
    assert crd["names"]["shortNames"] == ["msvc"]
    assert crd["scope"] == "Namespaced"
    version = crd["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}


def test_printer_columns_cover_the_required_set() -> None:
    columns = [
        c["name"].upper() for c in build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert columns == ["READY", "REPLICAS", "DRIFT", "P-VALUE", "THRESHOLD", "AGE"]


def test_every_spec_and_status_field_is_described() -> None:
    root = schema()
    for part in ("spec", "status"):
        for path, node in walk(root["properties"][part], part):
            assert node.get("description"), f"{path} has no description"


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert not {"$ref", "title", "$defs", "allOf"} & node.keys(), path
        if node.get("x-kubernetes-int-or-string"):
            continue
        assert "anyOf" not in node, path
        assert "type" in node, f"{path} has no type"
        # `additionalProperties: false` (pydantic's extra=forbid) is not allowed next to properties
        assert node.get("additionalProperties") is not False, path


def test_exclusive_bounds_use_the_openapi_v3_boolean_form() -> None:
    threshold = schema()["properties"]["spec"]["properties"]["drift"]["properties"][
        "pValueThreshold"
    ]
    assert (threshold["minimum"], threshold["exclusiveMinimum"]) == (0, True)
    assert (threshold["maximum"], threshold["exclusiveMaximum"]) == (1, True)


def test_cross_field_rules_have_messages() -> None:
    rules_found = [
        (path, rule)
        for path, node in walk(schema())
        for rule in node.get("x-kubernetes-validations", [])
    ]
    texts = " ".join(r["rule"] for _, r in rules_found)
    for fragment in (
        "self.minReplicas <= self.maxReplicas",
        "self.checkEvery <= self.windowSize",
        "has(self.replicas) && has(self.autoscaling)",
        "self.metadata.name",
    ):
        assert fragment in texts
    assert all(r.get("message") for _, r in rules_found)


def test_status_keeps_unknown_fields_for_kopf() -> None:
    status = schema()["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_the_schema_offers_only_the_tested_detectors() -> None:
    """The API server's enum message then names exactly mmd and ks (issue 14)."""
    detector = schema()["properties"]["spec"]["properties"]["drift"]["properties"]["detector"]
    assert detector["enum"] == ["mmd", "ks"]
    assert "online" not in detector["description"]
