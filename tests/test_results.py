"""Result types: immutability, JSON round trip (NaN included), no accidental truthiness,
and the failure message of ClaimAssertionError."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import numpy as np
import pytest

from resstream_assert.results import BlockRow, ClaimResult, ConfidenceInterval, TestResult, Verdict
from resstream_assert.errors import ClaimAssertionError

REQUIRED_KEYS = {"model", "backend", "claim", "verdict", "statistic", "p_value", "p_adjusted",
                 "effect", "ci_low", "ci_high", "n", "title", "source", "seed", "method",
                 "reason", "thresholds", "values", "gate", "rows", "figures"}


def _row(block: str, verdict: Verdict, rho: float, p: float, **kw) -> BlockRow:
    return BlockRow(block=block, verdict=verdict, statistic=rho, p_value=p, p_adjusted=min(1.0, 3 * p),
                    effect=rho, ci_low=rho - 0.2, ci_high=rho + 0.2, n=64, **kw)


def _claim(**changes) -> ClaimResult:
    rows = (
        _row("layer1.1", Verdict.HOLDS, -0.41, 0.0004, values={"frac_skip": 0.3}),
        _row("layer2.1", Verdict.FAILS, 0.05, 0.35, note="rho >= 0"),
        _row("layer3.1", Verdict.HOLDS, -0.38, 0.001),
    )
    base = ClaimResult(
        claim="C3", title="Skip channels have lower-magnitude block weights", source="P1",
        verdict=Verdict.FAILS, statistic=-0.25, p_value=0.01, p_adjusted=0.03, effect=-0.25,
        ci_low=-0.4, ci_high=-0.1, n=192, rows=rows, seed=1234, model="zoo:resnet18-synth96",
        method="spearman permutation, Holm", reason="1 of 3 blocks fails",
        thresholds={"alpha": 0.05, "min_effect": 0.1}, values={"n_resamples": 9999},
        figures={"rho": [-0.41, 0.05, -0.38], "hist": {"edges": np.linspace(0, 1, 3)}},
    )
    return base.with_(**changes) if changes else base


def test_verdict_is_a_string_enum():
    assert Verdict("holds") is Verdict.HOLDS and Verdict.NOT_APPLICABLE.value == "not_applicable"
    assert str(Verdict.FAILS) == "fails" and json.dumps(Verdict.INCONCLUSIVE) == '"inconclusive"'


@pytest.mark.parametrize("obj", [
    TestResult(0.1, 0.5, 0.1, -0.1, 0.3, 20, "m", "less", "rho"),
    _row("layer1.0", Verdict.HOLDS, 0.3, 0.01),
    _claim(),
    ConfidenceInterval(0.0, 1.0),
])
def test_no_accidental_truthiness(obj):
    with pytest.raises(TypeError, match=r"\.verdict"):
        bool(obj)
    with pytest.raises(TypeError):
        assert obj  # the misuse this guards against


def test_test_result_coerces_numpy_and_exposes_ci():
    r = TestResult(np.float64(-0.5), np.float64(0.001), np.float64(-0.5), -0.7, -0.3, np.int64(40),
                   "spearman permutation", "less", "spearman_rho", 9999, values={"k": np.int64(3)})
    assert type(r.statistic) is float and type(r.n) is int and type(r.values["k"]) is float
    ci = r.confidence_interval()
    assert ci == ConfidenceInterval(-0.7, -0.3, 0.95) and tuple(ci) == (-0.7, -0.3)
    lo, hi = ci
    assert (lo, hi) == (-0.7, -0.3) and -0.5 in ci and 0.0 not in ci
    assert ci.width == pytest.approx(0.4)
    assert json.loads(json.dumps(r.to_dict(), allow_nan=False))["n_resamples"] == 9999
    with pytest.raises(ValueError, match="p_value"):
        TestResult(0.0, 1.5, 0.0, 0.0, 0.0, 1, "m", "less", "e")
    assert TestResult(0.0, 1 + 4e-16, 0.0, 0.0, 0.0, 1, "m", "less", "e").p_value == 1.0  # scipy ulps


def test_results_are_immutable_and_hashable():
    c = _claim()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.verdict = Verdict.HOLDS  # type: ignore[misc]
    with pytest.raises(TypeError, match="read-only"):
        c.values["n_resamples"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        c.rows[0].values["frac_skip"] = 0.0  # type: ignore[index]
    assert isinstance(c.rows, tuple) and isinstance(c.figures["rho"], tuple)
    assert c.figures["hist"]["edges"] == (0.0, 0.5, 1.0)  # arrays become tuples of floats
    assert hash(c) == hash(_claim()) and c == _claim()
    assert pickle.loads(pickle.dumps(c)) == c


def test_to_dict_is_json_ready_with_required_keys():
    d = _claim(p_value=float("nan"), ci_high=math.inf, values={"x": float("nan")}).to_dict()
    assert REQUIRED_KEYS <= d.keys()
    assert d["verdict"] == "fails" and d["p_value"] is None and d["ci_high"] == "inf"
    assert d["values"] == {"x": None} and d["rows"][1]["note"] == "rho >= 0"
    assert d["rows"][0]["verdict"] == "holds" and d["figures"]["rho"] == [-0.41, 0.05, -0.38]
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN/Infinity tokens


def test_round_trip_exact_without_nan():
    c = _claim()
    back = ClaimResult.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.rows[0].values["frac_skip"] == 0.3
    assert isinstance(back.verdict, Verdict) and isinstance(back.rows[1].verdict, Verdict)


def test_round_trip_with_nan_and_inf_compares_via_to_dict():
    nan = float("nan")
    rows = (BlockRow("layer4.0", Verdict.NOT_APPLICABLE, nan, nan, nan, nan, nan, nan, 0,
                     note="gamma constant", values={"rho": nan}),)
    c = _claim(verdict=Verdict.NOT_APPLICABLE, statistic=nan, p_value=nan, p_adjusted=nan,
               effect=nan, ci_low=-math.inf, ci_high=nan, rows=rows,
               figures={"curve": [1.0, nan, math.inf]}, gate=False)
    back = ClaimResult.from_dict(json.loads(json.dumps(c.to_dict(), allow_nan=False)))
    assert back.to_dict() == c.to_dict()
    assert math.isnan(back.p_value) and back.ci_low == -math.inf and math.isnan(back.rows[0].values["rho"])
    assert back.gate is False and back.figures["curve"][2] == math.inf


def test_from_dict_ignores_unknown_keys_and_reports_missing_ones():
    d = _claim().to_dict()
    d["nodeid"] = "tests/test_claims.py::test_c3"
    assert ClaimResult.from_dict(d) == _claim()
    del d["seed"], d["rows"]
    with pytest.raises(ValueError, match="seed"):
        ClaimResult.from_dict(d)


def test_with_returns_a_changed_copy():
    c = _claim()
    h = c.with_(verdict="holds", reason="")
    assert h.verdict is Verdict.HOLDS and c.verdict is Verdict.FAILS and h.rows == c.rows


def test_table_is_fixed_width_and_marks_rows():
    c = _claim()
    lines = c.table(mark=lambda r: r.verdict is Verdict.FAILS).splitlines()
    assert lines[0].split()[:3] == ["block", "verdict", "statistic"] and set(lines[1]) == {"-"}
    body = lines[2:]
    assert [ln.startswith(">") for ln in body] == [False, True, False]
    assert "layer2.1" in body[1] and "rho >= 0" in body[1] and "[-0.150, +0.250]" in body[1]
    assert "4.0e-04" in body[0] and "0.3500" in body[1]  # p formatting: small ones in e-notation
    # Fixed width: the verdict column starts at the same offset on every line.
    assert len({ln.index(v) for ln, v in zip(body, ("holds", "fails", "holds"))}) == 1
    assert not any(ln.startswith(">") for ln in c.table().splitlines())
    assert c.with_(rows=()).table() == "(no per-block rows)"


def test_claim_assertion_error_message_marks_offending_blocks():
    c = _claim()
    err = ClaimAssertionError(c, expected=Verdict.HOLDS)
    assert isinstance(err, AssertionError) and err.result is c and err.expected is Verdict.HOLDS
    msg = str(err)
    head = msg.splitlines()[0]
    assert "C3" in head and c.title in head and "expected holds" in head and "got fails" in head
    assert "1 of 3 blocks fails" in head
    assert c.table(mark=lambda r: r.verdict is not Verdict.HOLDS) in msg
    marked = [ln for ln in msg.splitlines() if ln.startswith(">")]
    assert len(marked) == 1 and "layer2.1" in marked[0]
    with pytest.raises(AssertionError, match="expected holds, got fails"):
        raise err
    again = pickle.loads(pickle.dumps(err))  # e.g. crossing an xdist worker boundary
    assert str(again) == msg and again.result == c
    # Expecting "fails" (a negative control) marks the blocks that *held* instead.
    ctrl = str(ClaimAssertionError(c.with_(verdict=Verdict.HOLDS), expected="fails"))
    assert sum(ln.startswith(">") for ln in ctrl.splitlines()) == 2
