"""Assertion helpers that read like the claims. Failures raise :class:`ClaimAssertionError`.

Each helper takes either a :class:`ClaimResult` (checked as is) or a model spec string
(the claim is evaluated first, with the given thresholds). The error message is the
claim's per-block table with the offending blocks marked.

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
    from resstream_assert.api import analyze

    (result,) = analyze(str(model_or_result), claims=[claim], options=ClaimOptions(**options))
    return assert_claim(result, expect)


def assert_skip_overwrite_mix_spectrum(model_or_result, **options) -> ClaimResult:
    """C1: each block has non-negligible skip, mix and overwrite channels."""
    return check_claim(model_or_result, "C1", **options)


def assert_skip_channels_have_lower_branch_gain(model_or_result, **options) -> ClaimResult:
    """C3: Spearman(M, |gamma|) < 0 in the identity-shortcut blocks."""
    return check_claim(model_or_result, "C3", **options)


def assert_scale_invariant_channels_exceed_nulls(model_or_result, **options) -> ClaimResult:
    """C8: the P2 scale-invariant fraction exceeds the direction-reversed, flip and mismatch nulls."""
    return check_claim(model_or_result, "C8", **options)


def assert_residual_sum_is_flatter(model_or_result, **options) -> ClaimResult:
    """C9: the residual sum's zoom curve is flatter than either summand's for selected channels."""
    return check_claim(model_or_result, "C9", **options)


def assert_ablation_harms_scale_robustness(model_or_result, **options) -> ClaimResult:
    """C10: ablating scale-invariant channels costs more accuracy under zoom than random sets do."""
    return check_claim(model_or_result, "C10", **options)
