"""Assertion helpers that read like the claims. Failures raise :class:`ClaimAssertionError`.

Each helper takes either a :class:`ClaimResult` (checked as is) or a model spec string
(the claim is evaluated first, with the given thresholds). Inside a pytest run a spec is
evaluated in that run (:func:`resstream_assert.pipeline.current_run`): with its
``--resstream-images``, input size, probe set, seed and thresholds, and on its captures, so
the numbers are the run's own; outside pytest with the defaults. The error message is the
claim's per-block table with the offending blocks marked; the helpers' own frames are
hidden from pytest's traceback (``__tracebackhide__``).

Example:
    >>> from resstream_assert.assertions import assert_skip_channels_have_lower_branch_gain
    >>> assert_skip_channels_have_lower_branch_gain("zoo:resnet18-synth96", alpha=0.01)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Mapping

from resstream_assert.results import ClaimResult, Verdict
from resstream_assert.errors import ClaimAssertionError

__all__ = ["assert_claim", "check_claim", "ClaimAssertionError", "assert_skip_overwrite_mix_spectrum",
           "assert_skip_channels_have_lower_branch_gain", "assert_scale_invariant_channels_exceed_nulls",
           "assert_residual_sum_is_flatter", "assert_ablation_harms_scale_robustness"]


def assert_claim(result: ClaimResult, expect: str | Verdict = "holds") -> ClaimResult:
    """Raise :class:`ClaimAssertionError` unless ``result.verdict == expect``; return the result.

    Example:
        >>> assert_claim(result, expect="fails")  # doctest: +SKIP
    """
    __tracebackhide__ = True  # a failure shows the user's line and the per-block table, not this frame
    if not isinstance(result, ClaimResult):
        raise TypeError(f"assert_claim expects a ClaimResult, got {type(result).__name__}")
    if result.verdict != Verdict(expect):
        raise ClaimAssertionError(result, expect)
    return result


def check_claim(model_or_result, claim: str, *, expect: str | Verdict = "holds", **options) -> ClaimResult:
    """Evaluate ``claim`` on a model spec (or take a given result) and assert its verdict.

    ``options`` are claim thresholds (``alpha``, ``mostly``, ``min_effect``, ...), applied
    when the claim is evaluated here. A result mapping (claim id -> result, as the
    ``resstream_claim_results`` fixture gives) is accepted too.

    Example:
        >>> check_claim("torchvision:resnet18+nc-id", "C1", expect="fails")  # doctest: +SKIP
    """
    __tracebackhide__ = True
    from resstream_assert.claims import ClaimOptions

    unknown = set(options) - set(ClaimOptions.keys())
    if unknown:
        raise TypeError(f"unknown claim option(s) {sorted(unknown)}; allowed: {sorted(ClaimOptions.keys())}")
    if isinstance(model_or_result, Mapping):
        model_or_result = model_or_result[claim]
    if isinstance(model_or_result, ClaimResult):
        if options:
            raise ValueError("thresholds cannot be changed on a finished ClaimResult; pass the model spec instead")
        if model_or_result.claim != claim:
            raise ValueError(f"this helper checks {claim}, but the result is for {model_or_result.claim}")
        return assert_claim(model_or_result, expect)
    return assert_claim(_evaluate(str(model_or_result), claim, options), expect)


def _evaluate(spec: str, claim: str, options: Mapping) -> ClaimResult:
    """``claim`` on ``spec``: in the current pytest run (its options and captures) when there is one."""
    from resstream_assert.claims import ClaimOptions
    from resstream_assert.config import RunConfig
    from resstream_assert.pipeline import Pipeline, current_run

    pipe = current_run() or Pipeline(RunConfig(models=(spec,)))
    cfg = pipe.config
    backend = cfg.backends[0] if cfg.backends else cfg.spec_of(spec).default_backend
    opts = ClaimOptions.from_run(cfg.claim_options, **options)
    return pipe.evaluate(spec, backend, [claim], opts)[claim.upper()]


def assert_skip_overwrite_mix_spectrum(model_or_result, **options) -> ClaimResult:
    """C1: each block has non-negligible skip, mix and overwrite channels."""
    __tracebackhide__ = True
    return check_claim(model_or_result, "C1", **options)


def assert_skip_channels_have_lower_branch_gain(model_or_result, **options) -> ClaimResult:
    """C3: Spearman(M, |gamma|) < 0 in the identity-shortcut blocks."""
    __tracebackhide__ = True
    return check_claim(model_or_result, "C3", **options)


def assert_scale_invariant_channels_exceed_nulls(model_or_result, **options) -> ClaimResult:
    """C8: the P2 scale-invariant fraction exceeds the direction-reversed, flip and mismatch nulls."""
    __tracebackhide__ = True
    return check_claim(model_or_result, "C8", **options)


def assert_residual_sum_is_flatter(model_or_result, **options) -> ClaimResult:
    """C9: the residual sum's zoom curve is flatter than either summand's for selected channels."""
    __tracebackhide__ = True
    return check_claim(model_or_result, "C9", **options)


def assert_ablation_harms_scale_robustness(model_or_result, **options) -> ClaimResult:
    """C10: ablating scale-invariant channels costs more accuracy under zoom than random sets do."""
    __tracebackhide__ = True
    return check_claim(model_or_result, "C10", **options)
