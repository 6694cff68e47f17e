"""Statistical tests for residual-stream claims (numpy/scipy only, no torch).

Four rooms: :mod:`.ranks` (rank tests on measurements), :mod:`.means` (Welch's difference of
means, Cochran's Q across blocks), :mod:`.counts` (tests on counts and tables), :mod:`.pvalues`
(p-values from null draws, Holm, the chance check). Import from here.

Conventions shared by every test:

* Each returns an immutable :class:`~resstream_assert.results.TestResult` (except
  ``empirical_pvalue``, ``sequential_pvalue``, ``trend_slope``, ``bootstrap_ci``, ``holm``
  and ``at_chance``, which return plain values).
* Randomness comes only from the keyword ``rng`` (a ``numpy.random.Generator`` or an ``int``
  seed); the same seed gives bit-identical results.
* NaN observations are dropped (pairwise for paired data); ``n`` counts what the test
  used and ``n_dropped`` what was removed.
* Permutation / Monte-Carlo p-values use the +1/+1 rule, ``(1 + #{null as or more
  extreme}) / (n_resamples + 1)``, so the smallest possible p is ``1/(n_resamples + 1)``:
  size ``n_resamples`` so a real effect can clear ``alpha / m`` after Holm.
* Every CI is a two-sided 95% interval of the effect, even for one-sided tests (so a CI
  bound beyond the null is a stricter, alpha = 0.025, criterion than one-sided p < 0.05).
* Data that cannot support the test (constant input, empty group, table smaller than
  2×2, no discordant pairs...) raise :class:`DegenerateDataError` (a ``ValueError``);
  catch it to report ``not_applicable`` / ``inconclusive`` with its message as the reason.
"""

from resstream_assert.stats.effects import bootstrap_ci, trend_slope
from resstream_assert.errors import DegenerateDataError
from resstream_assert.stats.counts import (binomial_proportion, chi2_independence_mc, cochran_armitage,
                                           fisher_exact_greater, hypergeometric_overlap, mcnemar_exact)
from resstream_assert.stats.means import cochran_q, welch_difference
from resstream_assert.stats.pvalues import at_chance, empirical_pvalue, holm, sequential_pvalue
from resstream_assert.stats.ranks import (kruskal_wallis, mann_whitney, partial_spearman, sign_test,
                                          spearman_permutation, wilcoxon_signed_rank)

__all__ = [
    "DegenerateDataError", "spearman_permutation", "partial_spearman", "mann_whitney",
    "binomial_proportion", "chi2_independence_mc", "fisher_exact_greater", "cochran_armitage",
    "wilcoxon_signed_rank", "sign_test", "mcnemar_exact", "hypergeometric_overlap",
    "empirical_pvalue", "sequential_pvalue", "trend_slope", "bootstrap_ci", "holm", "at_chance",
    "kruskal_wallis", "welch_difference", "cochran_q",
]
