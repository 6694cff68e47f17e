"""Claims C1-C4: controls where they must fail and must hold, seeds, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata

from resstream_assert.assertions import ClaimAssertionError, assert_claim, check_claim
from resstream_assert.claims import ClaimOptions
from resstream_assert.measures import measure_all
from resstream_assert.results import Verdict
from resstream_assert.config import RunConfig
from resstream_assert.pipeline import Pipeline
from tests.cifar_user_model import resnet20
from resstream_assert.loading.random_weights import randomize_bn

SPEC = "tests.cifar_user_model:resnet20"


def _run(spec: str, claims, images: int = 256, seed: int = 0, **options):
    wb = Pipeline(RunConfig(models=(spec,), images=images, input_size=32, progress=False, seed=seed))
    return wb, wb.evaluate(spec, claims=claims, options=ClaimOptions(**options) if options else None)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A model whose branch gains were planted to fall with M (two rounds, since gains move M)."""
    path = tmp_path_factory.mktemp("planted") / "w.pth"
    torch.manual_seed(0)
    model = randomize_bn(resnet20(), seed=1).eval()
    for _ in range(2):
        torch.save(model.state_dict(), path)
        spec = f"{SPEC}@{path}"
        wb = Pipeline(RunConfig(models=(spec,), images=256, input_size=32, progress=False))
        measures, rmap = measure_all(wb.map(spec), wb.responses(spec)), wb.map(spec)
        with torch.no_grad():
            for bm in measures:
                if not rmap[bm.index].projection:
                    r = rankdata(np.nan_to_num(bm.mix_ratio("p1"), nan=1.0)) / bm.channels
                    model.get_submodule(rmap[bm.index].gain_source).weight.copy_(
                        torch.tensor(0.2 + 1.6 * (1 - r), dtype=torch.float32))
    torch.save(model.state_dict(), path)
    return f"{SPEC}@{path}"


def test_c3_holds_on_planted_gains(planted):
    _, res = _run(planted, ["C3"])
    r = res["C3"]
    assert r.verdict == Verdict.HOLDS and r.p_adjusted < 0.01 and r.effect < -0.5
    assert all(row.verdict == Verdict.HOLDS for row in r.rows)
    assert_claim(r, "holds")


@pytest.mark.parametrize("control", ["nc-perm", "nc-rand"])
def test_c3_does_not_hold_on_controls(planted, control):
    _, res = _run(f"{planted}+{control}", ["C3"])
    assert res["C3"].verdict != Verdict.HOLDS
    if control == "nc-rand":  # all gamma = 1: rho undefined
        assert res["C3"].verdict == Verdict.NOT_APPLICABLE and "equal" in res["C3"].reason


def test_c1_never_holds_on_nc_id_and_says_what_would_decide(planted):
    """Every channel is skip, but 0 mix channels of 16-64 is no evidence against 5% (0/64: upper bound
    5.6%): undecided, with the channel count that would decide (the next test shows a network that has it)."""
    _, res = _run(f"{planted}+nc-id", ["C1", "C2"])
    c1 = res["C1"]
    assert c1.verdict == Verdict.INCONCLUSIVE
    for row in c1.rows:
        assert row.values["frac_skip"] == 1.0 and row.values["frac_mix"] == 0.0
        assert row.verdict == Verdict.INCONCLUSIVE and row.values["n_to_decide"] > row.n
    assert res["C2"].verdict == Verdict.FAILS  # homogeneous by construction
    with pytest.raises(ClaimAssertionError, match=r"C1 .*expected holds, got inconclusive(.|\n)*> +layer1\.1"):
        check_claim(c1, "C1")


def test_c1_fails_with_evidence_on_controls_of_a_wide_network():
    """resnet18's blocks have 64-512 channels: 0 of >= 128 is evidence against 5%, so the controls fail."""
    for control, empty in (("nc-id", "frac_mix"), ("nc-plain", "frac_skip")):
        wb = Pipeline(RunConfig(models=(f"torchvision:resnet18+{control}",), images=64, input_size=64, progress=False))
        c1 = wb.evaluate(f"torchvision:resnet18+{control}", claims=["C1"])["C1"]
        assert c1.verdict == Verdict.FAILS, c1.reason
        wide = [r for r in c1.rows if r.n >= 128]
        assert wide and all(r.verdict == Verdict.FAILS and r.values[empty] == 0.0 for r in wide)


def test_c1_never_holds_on_nc_plain(planted):
    _, res = _run(f"{planted}+nc-plain", ["C1"])
    assert res["C1"].verdict == Verdict.INCONCLUSIVE
    assert all(row.values["frac_overwrite"] == 1.0 for row in res["C1"].rows)


def test_same_seed_same_numbers_other_seed_within_monte_carlo_error(planted):
    a = _run(planted, ["C2", "C3", "C4"], seed=5, n_resamples=999)[1]
    b = _run(planted, ["C2", "C3", "C4"], seed=5, n_resamples=999)[1]
    assert all(a[c].to_dict() == b[c].to_dict() for c in a)
    c = _run(planted, ["C4"], seed=6, n_resamples=999)[1]
    # C4's images are split in halves by the seed (groups on one, B(X_I) on the other): another seed,
    # another split, so its p-values move, but its groups still cover the same channels.
    assert [r.block for r in a["C4"].rows] == [r.block for r in c["C4"].rows]
    # C2's Monte-Carlo p moves only within its resampling error.
    p2a, p2c = a["C2"].p_value, _run(planted, ["C2"], seed=6, n_resamples=999)[1]["C2"].p_value
    assert abs(p2a - p2c) <= 4 * np.sqrt(max(p2a, 1e-3) / 1000) + 2e-3


def test_too_few_images_is_inconclusive_not_a_crash(planted):
    _, res = _run(planted, ["C1", "C3", "C4"], images=20)
    for r in res.values():
        assert r.verdict == Verdict.INCONCLUSIVE and "20 probe images" in r.reason


def test_c4_is_report_only(planted):
    _, res = _run(planted, ["C4"])
    assert res["C4"].gate is False
    assert res["C4"].verdict in (Verdict.HOLDS, Verdict.FAILS, Verdict.INCONCLUSIVE)
    assert "n_significant" in res["C4"].values or res["C4"].verdict == Verdict.INCONCLUSIVE


def test_assert_claim_rejects_other_types():
    with pytest.raises(TypeError):
        assert_claim("holds")


def test_claims_evaluated_one_after_another_get_the_variants_they_need(planted):
    """C1 needs only plain images; C5 then needs S/Sinv/flip: its measures must not be C1's."""
    wb = Pipeline(RunConfig(models=(planted,), images=128, input_size=32, progress=False))
    assert wb.evaluate(planted, claims=["C1"])["C1"].verdict != Verdict.NOT_APPLICABLE
    c5 = wb.evaluate(planted, claims=["C5"])["C5"]
    assert c5.verdict != Verdict.NOT_APPLICABLE, c5.reason
