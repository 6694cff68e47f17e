"""Per-channel quantities of the residual stream, computed from captured responses (numpy only).

Three rooms: :mod:`.ratios` (mix ratios, categories, stimulus-set means), :mod:`.scale`
(SM and zoom curves), :mod:`.block` (all of one block, every block). Import from here.

Stimuli are data: for channel ``c`` of a site, ``X_site(c)`` is a set of rows of a response
table. By default they are dataset exemplars, the ``k`` probe images with the highest
center-unit response (the papers' top-9 variant). A :class:`BlockStimuli` gives them
instead (e.g. feature visualizations, one image per seed): rows of its own responses, ``-1``
where a channel has no stimulus (undefined, never coded). A site's response to a stimulus
set is the mean center-unit response over its images. All quantities come from the
responses to a few stimulus variants (``id``, ``S``, ``Sinv``, ``flip``, ``zoom{z}``), so the
model never runs here. Natural scales (floors, silence) and the stimulus-free quantities
(tuning rho, contribution share) always come from the probe set's ``id`` responses.

Sites follow spec §1.3: ``I = skip_out`` (the true summand), ``B = branch_out`` and
``O = resid_post`` (P1) or ``resid_sum`` (P2, "Post"). Each mix ratio comes twice: the
papers' coded form (10 = skip, 0 = overwrite) and a principled one whose denominator is
floored at a fraction of the unit's natural activation scale (undefined below it, W2).
"""

from resstream_assert.measures.block import (EXEMPLAR_SITES, BlockMeasures, BlockStimuli, block_exemplars,
                                             block_measures, measure_all, p2_anti, p2_selected)
from resstream_assert.measures.ratios import (CATEGORY_NAMES, MIX, MIX_BAND, OVERWRITE, SKIP, UNDEFINED,
                                              MeasureOptions, categorize, coded_ratio, exemplars, mean_over,
                                              natural_scale, principled_ratio)
from resstream_assert.measures.scale import flatness, zoom_levels

__all__ = ["CATEGORY_NAMES", "EXEMPLAR_SITES", "MIX", "MIX_BAND", "OVERWRITE", "SKIP", "UNDEFINED", "BlockMeasures",
           "BlockStimuli", "MeasureOptions", "block_exemplars", "block_measures", "categorize", "coded_ratio",
           "exemplars", "flatness", "mean_over", "measure_all", "natural_scale", "p2_anti", "p2_selected",
           "principled_ratio", "zoom_levels"]
