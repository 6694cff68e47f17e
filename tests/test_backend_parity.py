"""Claims agree across backends: torch vs onnxruntime, and BN-kept vs BN-folded exports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resstream_assert.loading.onnx_export import export_onnx
from resstream_assert.measures import measure_all
from resstream_assert.claims import REGISTRY
from resstream_assert.claims.gain_scaling import plan_scaling
from resstream_assert.results import Verdict
from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline

CLAIMS = ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]


@pytest.fixture(scope="module")
def spec(random_weights_spec):
    return random_weights_spec("tests.cifar_user_model:resnet20", 2)


def _bench(spec: str) -> Pipeline:
    # engine torch: the torch backend must run torch here (by default on CPU it runs the ONNX export)
    return Pipeline(RunConfig(models=(spec,), images=128, input_size=32, progress=False, engine="torch"))


def test_every_claim_agrees_between_torch_and_onnxruntime(spec):
    wb = _bench(spec)
    torch_res = wb.evaluate(spec, "torch", CLAIMS, None)
    onnx_res = wb.evaluate(spec, "onnx", CLAIMS, None)
    for cid in CLAIMS:
        a, b = torch_res[cid], onnx_res[cid]
        assert (a.verdict, b.backend) == (b.verdict, "onnx"), cid
        assert [r.verdict for r in a.rows] == [r.verdict for r in b.rows], cid
        np.testing.assert_allclose([r.statistic for r in a.rows], [r.statistic for r in b.rows], rtol=1e-3,
                                   atol=1e-6, equal_nan=True, err_msg=cid)
        np.testing.assert_allclose(a.effect, b.effect, rtol=1e-3, atol=1e-6, equal_nan=True, err_msg=cid)


def test_folded_and_unfolded_exports_give_the_same_mix_ratios(spec, tmp_path):
    wb = _bench(spec)
    loaded = wb.model(spec)
    kept, folded = tmp_path / "kept.onnx", tmp_path / "folded.onnx"
    export_onnx(loaded, kept, fold_bn=False)
    export_onnx(loaded, folded, fold_bn=True)
    measures = {}
    for path in (kept, folded):
        s = str(path)
        bench = _bench(s)
        measures[path.stem] = measure_all(bench.map(s, "onnx"), bench.responses(s, ("id",), "onnx"))
        kinds = {b.gain_kind for b in bench.map(s, "onnx")}
        assert kinds == ({"bn"} if path == kept else {"fused_conv_proxy"})
    for a, b in zip(measures["kept"], measures["folded"]):
        np.testing.assert_allclose(a.m_p1, b.m_p1, rtol=1e-4, equal_nan=True)
        np.testing.assert_allclose(a.m_p2, b.m_p2, rtol=1e-4, equal_nan=True)
        assert (a.category("p1") == b.category("p1")).all()


def test_folded_export_flags_c3_gain_as_proxy(spec, tmp_path):
    wb = _bench(spec)
    path = tmp_path / "folded.onnx"
    export_onnx(wb.model(spec), path, fold_bn=True)
    res = _bench(str(path)).evaluate(str(path), "onnx", ["C3"], None)["C3"]
    tested = [r for r in res.rows if math.isfinite(r.p_value)]  # every block with a test, decided or not
    assert tested and all("proxy" in r.note for r in tested)


def test_x1_x2_verdicts_agree_between_torch_and_onnxruntime_on_a_zoo_model():
    """X1/X2 through torch (edited activations) and onnxruntime (edited BN initializers) on a trained model."""
    model = "zoo:cifar-resnet20-synth32"
    wb = Pipeline(RunConfig(models=(model,), images=128, progress=False,
                            claim_options={"intervention": {"channels": 16}}))
    torch_res = wb.evaluate(model, "torch", ["X1", "X2"])
    onnx_res = wb.evaluate(model, "onnx", ["X1", "X2"])
    for cid in ("X1", "X2"):
        a, b = torch_res[cid], onnx_res[cid]
        assert a.verdict == b.verdict == Verdict.HOLDS, cid
        assert [r.verdict for r in a.rows] == [r.verdict for r in b.rows], cid
        np.testing.assert_allclose([r.effect for r in a.rows], [r.effect for r in b.rows], atol=1e-9, err_msg=cid)
        for ra, rb in zip(a.rows, b.rows):
            assert ra.values["frac_flip"] == rb.values["frac_flip"], (cid, ra.block)


def test_folded_export_scales_the_fused_conv(spec, tmp_path):
    """BN folded into the Conv: scaling the fused weight and bias is gamma and beta scaled together (the same M as
    with BN kept); gamma alone (beta held) is not an edit of that graph, and says so."""
    wb = _bench(spec)
    loaded = wb.model(spec)
    kept, folded = tmp_path / "kept.onnx", tmp_path / "folded.onnx"
    export_onnx(loaded, kept, fold_bn=False)
    export_onnx(loaded, folded, fold_bn=True)
    data = {}
    for path in (kept, folded):
        bench = Pipeline(RunConfig(models=(str(path),), images=128, input_size=32, progress=False,
                                   claim_options={"intervention": {"channels": 8}}))
        ctx = bench.context(str(path), "onnx", ["X1"]).for_claim(REGISTRY["X1"])
        data[path.stem] = bench.intervention(str(path), "onnx", plan_scaling(ctx))
    for a, b in zip(data["kept"].blocks, data["folded"].blocks):
        assert b.gain_kind == "fused_conv_proxy" and "folded" in b.notes["held"] and "held" not in b.gain
        for site in a.gain["scaled"]:
            np.testing.assert_allclose(a.gain["scaled"][site], b.gain["scaled"][site], rtol=1e-3, atol=1e-4)
