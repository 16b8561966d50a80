"""The runtime benchmark's request bodies, answer checks, ratios and targets: what its figures
and its verdicts rest on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from aiops_runtime.oip import encode_infer_response, parse_infer_request
from tests.bench.bench_modules import load

bench = load("runtime_bench")
ROWS = np.arange(60.0).reshape(2, 30) / 7
PROBA = [0.25, 0.75]


def test_oip_bodies_are_valid_infer_requests_for_the_runtime() -> None:
    bodies = bench.request_bodies("oip", ROWS)

    decoded = [parse_infer_request(body.encode(), 30, 1).rows for body in bodies]

    assert np.array_equal(np.concatenate(decoded), ROWS)


@pytest.mark.parametrize("protocol", ["predict", "seed"])
def test_predict_bodies_hold_one_row_each(protocol: str) -> None:
    bodies = [json.loads(b) for b in bench.request_bodies(protocol, ROWS)]

    assert [b["features"] for b in bodies] == ROWS.tolist()


@pytest.mark.parametrize("protocol", ["kserve_v2", "mlserver"])
def test_v2_peer_bodies_send_one_fp64_row_of_30(protocol: str) -> None:
    body = json.loads(bench.request_bodies(protocol, ROWS)[1])

    (tensor,) = body["inputs"]
    assert tensor["shape"] == [1, 30]
    assert tensor["datatype"] == "FP64"
    assert tensor["data"] == ROWS[1].tolist()


def test_mlserver_bodies_ask_for_the_probabilities() -> None:
    body = json.loads(bench.request_bodies("mlserver", ROWS)[0])

    assert body["outputs"] == [{"name": "predict_proba"}]


def test_kserve_v1_and_bentoml_bodies_are_batches_of_one_row() -> None:
    v1 = json.loads(bench.request_bodies("kserve_v1", ROWS)[0])
    bento = json.loads(bench.request_bodies("bentoml", ROWS)[0])

    assert v1 == {"instances": [ROWS[0].tolist()]}
    assert bento == {"features": [ROWS[0].tolist()]}


ANSWERS = {
    "predict": {"predictions": ["malignant"], "probabilities": [PROBA]},
    "seed": {"prediction": 1, "probabilities": PROBA},
    "oip": encode_infer_response("model", "", "r1", np.array([PROBA]), ()),
    "mlserver": {"outputs": [{"name": "predict_proba", "shape": [1, 2], "data": PROBA}]},
    "kserve_v1": {"predictions": [PROBA]},
    "kserve_v2": {"outputs": [{"name": "output-0", "shape": [1, 2], "data": PROBA}]},
    "bentoml": [PROBA],
}


@pytest.mark.parametrize("protocol", sorted(ANSWERS))
def test_a_right_answer_passes_the_check(protocol: str) -> None:
    body = json.dumps(ANSWERS[protocol]).encode()

    assert bench.answer_error(protocol, 200, body, PROBA) is None


@pytest.mark.parametrize("protocol", sorted(ANSWERS))
def test_other_probabilities_fail_the_check(protocol: str) -> None:
    body = json.dumps(ANSWERS[protocol]).encode()

    error = bench.answer_error(protocol, 200, body, [0.75, 0.25])

    assert error is not None
    assert "expected [0.75, 0.25]" in error


def test_an_error_status_fails_the_check_with_the_body() -> None:
    error = bench.answer_error("oip", 400, b'{"error": "inputs is required"}', PROBA)

    assert error is not None
    assert "400" in error
    assert "inputs is required" in error


def test_an_answer_in_another_protocol_fails_the_check() -> None:
    body = json.dumps(ANSWERS["kserve_v1"]).encode()

    error = bench.answer_error("oip", 200, body, PROBA)

    assert error is not None
    assert "no probabilities" in error


def test_ratios_divide_the_named_variants_requests_per_second() -> None:
    rps = {"drift_on": 900.0, "floor": 1000.0, "kserve_v1": 200.0, "oip": 810.0}

    got = bench.ratios(rps)

    assert got["ratio_drift_on_vs_floor_c16"] == 0.9
    assert got["ratio_vs_kserve_c16"] == 4.5
    assert got["ratio_oip_vs_predict_c16"] == 0.9
    assert got["ratio_vs_bentoml_c16"] is None  # not measured
    assert set(got) == set(bench.RATIOS)


def test_targets_are_met_at_their_bounds_and_missed_past_them() -> None:
    report = {
        "ratio_drift_on_vs_floor_c16": 0.85,
        "ratio_vs_kserve_c16": 3.99,
        "ratio_p99_drift_on_vs_floor_c64": 1.5,
        "rss_mb": 200.1,
        "ready_s": None,
    }

    met = bench.targets_met(report)

    assert met["ratio_drift_on_vs_floor_c16"] is True
    assert met["ratio_vs_kserve_c16"] is False
    assert met["ratio_p99_drift_on_vs_floor_c64"] is True
    assert met["rss_mb"] is False
    assert met["ready_s"] is None
    assert met["ratio_vs_mlserver_c16"] is None


def _results(rps: dict[str, float]) -> object:
    results = bench.Results()
    for name, value in rps.items():
        for conc in (16, 64):
            run = {"rps": value, "p99_us": 1e6 / value, "cpu_us_per_req": 1e6 / value}
            results.runs.setdefault(name, {})[conc] = [run]
    results.ready_s["drift_on"] = [1.0]
    results.rss_mb["drift_on"] = [150.0]
    return results


def test_the_report_names_every_ratio_of_the_issue_and_whether_it_meets_its_target() -> None:
    rps = {name: 100.0 for name in bench.VARIANTS}
    rps |= {"floor": 1000.0, "drift_on": 900.0, "oip": 800.0}
    args = argparse.Namespace(rounds=1, duration=1.0, conc=[16, 64])

    report = bench.final_report(_results(rps), args, ("1", "0"), {"kserve": "0.21.0"})

    assert report["ratio_vs_kserve_c16"] == 9.0
    assert report["ratio_vs_kserve_v2_c16"] == 9.0
    assert report["ratio_vs_bentoml_c16"] == 9.0
    assert report["ratio_vs_mlserver_c16"] == 9.0
    assert report["ratio_oip_vs_predict_c16"] == 0.889
    assert report["ratio_oip_vs_kserve_v2_c16"] == 8.0
    assert report["ratio_drift_on_vs_floor_c16"] == 0.9
    # p99 is 1/rps here: the slower server's p99 is the longer.
    assert report["ratio_p99_drift_on_vs_floor_c64"] == 1.111
    assert report["versions"] == {"kserve": "0.21.0"}
    assert report["targets_met"] == {
        "ratio_drift_on_vs_floor_c16": True,
        "ratio_vs_kserve_c16": True,
        "ratio_vs_bentoml_c16": False,
        "ratio_vs_mlserver_c16": True,
        "ratio_oip_vs_predict_c16": True,
        "ratio_oip_vs_kserve_v2_c16": True,
        "ratio_p99_drift_on_vs_floor_c64": True,
        "ready_s": True,
        "rss_mb": True,
    }


def test_a_virtualenv_built_from_a_lock_is_rebuilt_when_the_lock_changes(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.3.0 --hash=sha256:aa\n")
    args = ["--require-hashes", "-r", str(lock)]
    before = bench.venv_stamp(args)
    assert bench.venv_stamp(args) == before
    lock.write_text("numpy==2.3.1 --hash=sha256:bb\n")
    assert bench.venv_stamp(args) != before
    assert bench.venv_stamp(["kserve==0.21.0"]) == "kserve==0.21.0"


def test_our_variants_run_on_the_locked_dependencies_the_image_installs() -> None:
    shipped = bench.VENV_SPECS["shipped"]
    assert shipped[-1] == str(bench.REPO / "runtime" / "requirements.lock")
    assert "--require-hashes" in shipped
