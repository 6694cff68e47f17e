"""Per-channel quantities of the residual stream, computed from captured responses (numpy only).

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

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from resstream_assert.discovery.residual_map import Block, ResidualMap
from resstream_assert.stimuli.variants import parse_variant

#: The papers' mix band (P1 commit e6f1fbf): 2/3 < M < 3/2.
MIX_BAND = (2 / 3, 3 / 2)
OVERWRITE, MIX, SKIP, UNDEFINED = 0, 1, 2, -1
CATEGORY_NAMES = {OVERWRITE: "overwrite", MIX: "mix", SKIP: "skip"}


@dataclass(frozen=True)
class MeasureOptions:
    """Knobs of the measures (defaults follow the papers where they say).

    Example:
        >>> MeasureOptions(k=5).band
        (0.6666666666666666, 1.5)
    """

    k: int = 9
    band: tuple[float, float] = MIX_BAND
    floor: float = 0.01  # denominators below floor x (99th percentile |response|) are undefined
    seed: int = 0  # for the channel-mismatch null's derangement
    tuning: bool = True  # the I-B tuning correlations (C4); off when only mix ratios are wanted (interventions)


@dataclass(frozen=True)
class BlockMeasures:
    """Every per-channel quantity of one block; arrays are (C,) unless noted, NaN = undefined.

    ``responses_to_exemplars`` holds the nine activations of spec §2.2: ``"O(X_I)"`` is the
    output's mean center-unit response to the input site's exemplars, and so on for O, I, B
    on X_I, X_B, X_O. ``m_p1``/``m_p2`` are principled mix ratios (``inf`` when the branch is silent on the
    probe set, 0 when the shortcut is); ``m_p1_coded``/``m_p2_coded`` use the papers' codes.
    ``scale`` holds the S/S^-1 quantities and nulls (absent without those variants);
    ``zoom`` holds zoom-response curves (absent without zoom variants).
    """

    block: str
    index: int
    channels: int
    responses_to_exemplars: Mapping[str, np.ndarray]
    m_p1: np.ndarray
    m_p2: np.ndarray
    m_p1_coded: np.ndarray
    m_p2_coded: np.ndarray
    branch_gain: np.ndarray | None
    conv_magnitude: np.ndarray | None
    gain_kind: str
    b_at_xi: np.ndarray
    rho_tuning: np.ndarray
    rho_tuning_all: np.ndarray
    contribution_share: np.ndarray
    scale: Mapping[str, np.ndarray] = field(default_factory=dict)
    zoom: Mapping[str, np.ndarray] = field(default_factory=dict)

    def category(self, convention: str = "p1", band: tuple[float, float] = MIX_BAND, coded: bool = False) -> np.ndarray:
        """Skip / mix / overwrite code per channel (:data:`UNDEFINED` where M is undefined)."""
        return categorize(self.mix_ratio(convention, coded), band)

    def mix_ratio(self, convention: str = "p1", coded: bool = False) -> np.ndarray:
        """``M_c`` in the P1 (post-activation output) or P2 (pre-activation sum) convention."""
        if convention not in ("p1", "p2"):
            raise ValueError(f"convention must be 'p1' or 'p2', not {convention!r}")
        return {("p1", False): self.m_p1, ("p2", False): self.m_p2,
                ("p1", True): self.m_p1_coded, ("p2", True): self.m_p2_coded}[(convention, coded)]


@dataclass(frozen=True)
class BlockStimuli:
    """Given stimuli of one block, in place of top-k exemplars.

    ``responses`` maps each stimulus variant to the responses of the stimulus images (rows);
    ``xi``, ``xb``, ``xo_p1``, ``xo_p2`` are ``(C, K)`` row indices of each channel's stimuli for
    the input (I), branch (B) and output (O: P1's resid_post, P2's resid_sum) sites; ``-1``
    marks a missing stimulus (a channel not sampled, an image that failed its success check).

    Example:
        >>> st = BlockStimuli({"id": fz_resp}, xi, xb, xo, xo, source="featviz")  # doctest: +SKIP
        >>> int(st.measured.sum())  # doctest: +SKIP
        16
    """

    responses: Mapping
    xi: np.ndarray
    xb: np.ndarray
    xo_p1: np.ndarray
    xo_p2: np.ndarray
    source: str = "featviz"

    @property
    def measured(self) -> np.ndarray:
        """Boolean (C,): channels with at least one stimulus at some site."""
        return ((self.xi >= 0) | (self.xb >= 0) | (self.xo_p1 >= 0) | (self.xo_p2 >= 0)).any(axis=1)


def exemplars(values: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(C, k)`` of the ``k`` images with the highest response per channel (ties: lower index first).

    Example:
        >>> exemplars(np.array([[1., 0.], [3., 2.], [2., 5.]]), 2).tolist()
        [[1, 2], [2, 1]]
    """
    k = min(k, values.shape[0])
    order = np.argsort(-values, axis=0, kind="stable")[:k]
    return order.T.copy()


def mean_over(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per channel ``c``, the mean of ``values[idx[c], c]``: a site's response to channel-specific stimuli.

    ``idx`` entries of ``-1`` are missing stimuli: the mean is over the others, NaN if none.

    Example:
        >>> mean_over(np.array([[1., 0.], [3., 2.]]), np.array([[0, 1], [1, 1]])).tolist()
        [2.0, 2.0]
        >>> mean_over(np.array([[1., 0.], [3., 2.]]), np.array([[0, -1], [-1, -1]])).tolist()
        [1.0, nan]
    """
    if idx.size == 0 or idx.min() >= 0:
        return values[idx, np.arange(values.shape[1])[:, None]].mean(axis=1)
    ok = idx >= 0
    picked = np.where(ok, values[np.maximum(idx, 0), np.arange(values.shape[1])[:, None]], 0.0)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, picked.sum(axis=1) / n, np.nan)


def natural_scale(values: np.ndarray) -> np.ndarray:
    """99th percentile of ``|response|`` per channel over the probe set."""
    return np.percentile(np.abs(values), 99, axis=0)


def categorize(m: np.ndarray, band: tuple[float, float] = MIX_BAND) -> np.ndarray:
    """Overwrite (``M <= lo``), mix (``lo < M < hi``), skip (``M >= hi``), undefined (NaN).

    Example:
        >>> categorize(np.array([0.1, 1.0, 4.0, np.nan, np.inf])).tolist()
        [0, 1, 2, -1, 2]
    """
    lo, hi = band
    out = np.full(m.shape, UNDEFINED, dtype=np.int64)
    out[m <= lo] = OVERWRITE
    out[(m > lo) & (m < hi)] = MIX
    out[m >= hi] = SKIP
    return out


def coded_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """The papers' ``M`` with edge codes (spec §2.3): den <= 0 -> 10, else num <= 0 -> 0; both < 0 undefined.

    Example:
        >>> coded_ratio(np.array([2., 1., -1., -1.]), np.array([1., 0., 2., -1.])).tolist()
        [2.0, 10.0, 0.0, nan]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(den <= 0, 10.0, np.where(num <= 0, 0.0, num / den))
    return np.where((num < 0) & (den < 0), np.nan, m)


def principled_ratio(num: np.ndarray, den: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """``max(num, eps) / den`` where ``den >= eps``, NaN (undefined) where the denominator is below the floor.

    Example:
        >>> principled_ratio(np.array([2., -1., 1.]), np.array([1., 2., 0.001]), np.array([.01, .01, .01])).tolist()
        [2.0, 0.005, nan]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den >= eps, np.maximum(num, eps) / den, np.nan)


def _silent(values: np.ndarray, ref_scale: np.ndarray) -> np.ndarray:
    """Channels whose response does not vary over the probe set (e.g. a zeroed branch)."""
    return np.ptp(values, axis=0) <= 1e-6 * np.maximum(ref_scale, 1e-12)


def _mix_ratios(i_site, b_site, o_site, xi, xb, floor, o_stim=None):
    """M from the output's responses to the stimuli (``o_stim``, default the probe's ``o_site``)."""
    given = o_stim is not None
    o_stim = o_site if o_stim is None else o_stim
    num, den = mean_over(o_stim, xi), mean_over(o_stim, xb)
    scale = natural_scale(o_site)
    coded, principled = coded_ratio(num, den), principled_ratio(num, den, floor * scale)
    # A site with no variation has no preferred stimulus: a silent branch means the output
    # follows the input alone (pure skip), a silent shortcut means pure overwrite. Given
    # stimuli that are missing (failed) stay undefined: never coded.
    silent_b, silent_i = _silent(b_site, scale), _silent(i_site, scale)
    if given:
        has = ~np.isnan(num) & ~np.isnan(den)
        silent_b, silent_i = silent_b & has, silent_i & has
    for arr, code in ((coded, 10.0), (principled, np.inf)):
        arr[silent_b & ~silent_i] = code
        arr[silent_i & ~silent_b] = 0.0
        arr[silent_i & silent_b] = np.nan
    return coded, principled, num, den


def _spearman_columns(x: np.ndarray, y: np.ndarray, positive_x: bool) -> np.ndarray:
    """Spearman rho per column of two (N, C) arrays, optionally over rows with ``x > 0`` only.

    Pearson correlation of average ranks within each column's kept rows (what
    ``scipy.stats.spearmanr`` computes per column, vectorized); NaN where fewer than 5 rows
    are kept or either side is constant on them.

    Example:
        >>> x = np.array([[1., -1.], [2., 2.], [3., 3.], [4., 1.], [5., 5.], [6., 4.]])
        >>> _spearman_columns(x, -x, positive_x=False).tolist()
        [-1.0, -1.0]
    """
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = (x > 0) if positive_x else np.ones(x.shape, dtype=bool)
    n = keep.sum(axis=0)
    out = np.full(x.shape[1], np.nan)
    varies = lambda a: np.where(keep, a, -np.inf).max(axis=0, initial=-np.inf) > \
        np.where(keep, a, np.inf).min(axis=0, initial=np.inf)  # noqa: E731
    ok = (n >= 5) & varies(x) & varies(y)
    if not ok.any():
        return out
    k = keep[:, ok]
    # Rows left out rank after every kept row (+inf), so kept rows get their average ranks 1..n.
    rx, ry = (rankdata(np.where(k, a[:, ok], np.inf), axis=0) for a in (x, y))
    mean = lambda r: np.where(k, r, 0.0).sum(axis=0) / k.sum(axis=0)  # noqa: E731
    dx = np.where(k, rx - mean(rx), 0.0)
    dy = np.where(k, ry - mean(ry), 0.0)
    out[ok] = (dx * dy).sum(axis=0) / np.sqrt((dx * dx).sum(axis=0) * (dy * dy).sum(axis=0))
    return out


def _scale_quantities(block: Block, resp, xi, xb, i_id, b_id, opts: MeasureOptions,
                      measured: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """SM_B, SM_I (spec §2.7) and their nulls (C5): reversed direction, flip, channel mismatch.

    ``resp`` holds the stimuli's responses per variant; ``i_id``/``b_id`` are the probe's (floors).
    ``measured`` (given stimuli) limits the mismatch null's derangement to channels that have stimuli.
    """
    if not all(v in resp for v in ("S", "Sinv")):
        return {}
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    s_i, s_b = resp["id"].get(block, "skip_out"), resp["id"].get(block, "branch_out")
    i_xb = relu(mean_over(s_i, xb))
    # SM divides by each site's response to its own exemplars; below the floor it is undefined (W2).
    norm_b = _inverse_floored(mean_over(s_b, xb), opts.floor * natural_scale(b_id))
    norm_i = _inverse_floored(mean_over(s_i, xi), opts.floor * natural_scale(i_id))

    def deltas(v_b: str, v_i: str, xi_=xi):
        d_b = relu(mean_over(resp[v_b].get(block, "branch_out"), xi_)) - relu(mean_over(s_b, xi_))
        d_i = relu(mean_over(resp[v_i].get(block, "skip_out"), xb)) - i_xb
        return d_b, d_i

    out: dict[str, np.ndarray] = {}
    d_b, d_i = deltas("S", "Sinv")
    out.update(delta_b=d_b, delta_i=d_i, sm_b=d_b * norm_b, sm_i=d_i * norm_i)
    d_b, d_i = deltas("Sinv", "S")
    out.update(delta_b_rev=d_b, sm_b_rev=d_b * norm_b, sm_i_rev=d_i * norm_i)
    if "flip" in resp:
        d_b, d_i = deltas("flip", "flip")
        out.update(delta_b_flip=d_b, sm_b_flip=d_b * norm_b, sm_i_flip=d_i * norm_i)
    rng = np.random.default_rng([opts.seed, block.index])
    if measured is None:
        derange = _derangement(block.channels, rng)
    else:  # given stimuli: channel c gets another *measured* channel's stimuli
        have = np.flatnonzero(measured)
        derange = np.arange(block.channels)
        derange[have] = have[_derangement(len(have), rng)]
    d_b, _ = deltas("S", "Sinv", xi_=xi[derange])
    out.update(sm_b_mismatch=d_b * norm_b)
    return out


def _inverse_floored(den: np.ndarray, eps: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((den >= eps) & (den > 0), 1.0 / den, np.nan)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation with no fixed point (channel c gets another channel's stimuli)."""
    if n < 2:
        return np.arange(n)
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


def zoom_levels(resp: Mapping) -> list[tuple[float, str]]:
    """The ``(zoom, variant)`` pairs present in ``resp``, sorted by zoom (``id`` counts as zoom 1)."""
    levels = {1.0: "id"} if "id" in resp else {}
    for name in resp:
        kind, z = parse_variant(name)
        if kind == "zoom":
            levels.setdefault(float(z), name)
    return sorted(levels.items())


def _zoom_curves(block: Block, resp, xi, xo) -> dict[str, np.ndarray]:
    """Responses (C, Z) of I, B and the sum to zoomed copies of each channel's own exemplars."""
    levels = zoom_levels(resp)
    if len(levels) < 3:
        return {}
    curves: dict[str, list] = {"in": [], "pre": [], "post": [], "pre_on_xi": []}
    for _, v in levels:
        r = resp[v]
        curves["in"].append(mean_over(r.get(block, "skip_out"), xo))
        curves["pre"].append(mean_over(r.get(block, "branch_out"), xo))
        curves["post"].append(mean_over(r.get(block, "resid_sum"), xo))
        curves["pre_on_xi"].append(mean_over(r.get(block, "branch_out"), xi))
    out = {k: np.stack(v, axis=1) for k, v in curves.items()}
    out["zooms"] = np.array([z for z, _ in levels])
    return out


def flatness(curves: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """``min / max`` of each ReLU'd curve (1 = perfectly flat), NaN where the curve never rises above ``eps``.

    Example:
        >>> flatness(np.array([[1., 1., 1.], [2., 1., 0.], [0., 0., 0.]])).tolist()
        [1.0, 0.0, nan]
    """
    pos = np.maximum(curves, 0.0)
    top = pos.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(top > eps, pos.min(axis=1) / top, np.nan)


#: The sites whose exemplars the measures use (X_I, X_B, X_O in P1's and P2's convention).
EXEMPLAR_SITES = ("skip_out", "branch_out", "resid_post", "resid_sum")


def block_exemplars(block: Block, resp: Mapping, k: int = 9) -> dict[str, np.ndarray]:
    """The top-``k`` exemplar indices ``(C, k)`` of each site in :data:`EXEMPLAR_SITES`, from ``resp["id"]``.

    Pass them (or any other stimulus indices, e.g. of feature visualizations appended to the
    probe set) to :func:`block_measures` as ``exemplars=`` to hold the stimuli fixed while
    the responses change (an intervention on the model must not move M by re-picking them).

    Example:
        >>> fixed = block_exemplars(rmap[3], responses)  # doctest: +SKIP
        >>> sorted(fixed), fixed["skip_out"].shape  # doctest: +SKIP
        (['branch_out', 'resid_post', 'resid_sum', 'skip_out'], (128, 9))
    """
    r = resp["id"]
    return {site: exemplars(r.get(block, site), k) for site in EXEMPLAR_SITES}


def _given_exemplars(given: Mapping[str, np.ndarray] | None, site: str, values: np.ndarray, k: int) -> np.ndarray:
    """The stimulus indices of ``site``: the given ones (checked), else the top-k of ``values``."""
    if not given or site not in given:
        return exemplars(values, k)
    idx = np.asarray(given[site])
    n, c = values.shape
    if idx.ndim != 2 or idx.shape[0] != c or idx.shape[1] < 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"exemplars[{site!r}] must be integer image indices of shape (channels={c}, k), "
                         f"got {idx.dtype} {idx.shape}")
    if idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"exemplars[{site!r}] indexes images outside 0..{n - 1} (the responses hold {n} images)")
    return idx


def block_measures(block: Block, resp: Mapping, opts: MeasureOptions = MeasureOptions(),
                   stimuli: BlockStimuli | None = None,
                   exemplars: Mapping[str, np.ndarray] | None = None) -> BlockMeasures:
    """All per-channel quantities of ``block`` from ``resp`` (the probe set: variant -> Responses; ``id`` required).

    ``stimuli=None`` uses the top-``k`` probe exemplars of each site and channel; a
    :class:`BlockStimuli` gives the stimuli instead (its own responses, the same variants);
    ``exemplars`` (site -> ``(C, k)`` indices into ``resp``, see :func:`block_exemplars`) holds the
    probe stimuli fixed, e.g. while an intervention changes the responses (sites left out get
    their top-``opts.k``).

    Example:
        >>> bm = block_measures(rmap[3], responses)  # doctest: +SKIP
        >>> bm.category("p1")  # doctest: +SKIP
        >>> same_stimuli = block_measures(rmap[3], edited, exemplars=block_exemplars(rmap[3], responses))  # doctest: +SKIP
    """
    r = resp["id"]
    i_id, b_id = r.get(block, "skip_out"), r.get(block, "branch_out")
    post, total = r.get(block, "resid_post"), r.get(block, "resid_sum")
    if stimuli is None and exemplars:
        stimuli = BlockStimuli(resp, *(_given_exemplars(exemplars, site, r.get(block, site), opts.k)
                                       for site in EXEMPLAR_SITES), source="given")
    if stimuli is None:  # the parameter `exemplars` is empty here; the top-k come from _given_exemplars
        stim, measured = resp, None
        xi, xb = _given_exemplars(None, "skip_out", i_id, opts.k), _given_exemplars(None, "branch_out", b_id, opts.k)
        xo_p1, xo_p2 = _given_exemplars(None, "resid_post", post, opts.k), _given_exemplars(None, "resid_sum", total,
                                                                                          opts.k)
    else:
        xi, xb, xo_p1, xo_p2 = (np.asarray(a, np.int64) for a in (stimuli.xi, stimuli.xb, stimuli.xo_p1, stimuli.xo_p2))
        bad = [a.shape for a in (xi, xb, xo_p1, xo_p2) if a.ndim != 2 or a.shape[0] != block.channels]
        if bad:
            raise ValueError(f"block {block.name}: stimulus indices must be (channels={block.channels}, K), got {bad}")
        stim, measured = stimuli.responses, stimuli.measured
    s = stim["id"]
    s_i, s_b, s_post = s.get(block, "skip_out"), s.get(block, "branch_out"), s.get(block, "resid_post")
    given = stimuli is not None
    m1c, m1, o1_xi, o1_xb = _mix_ratios(i_id, b_id, post, xi, xb, opts.floor, s_post if given else None)
    m2c, m2, _, _ = _mix_ratios(i_id, b_id, total, xi, xb, opts.floor, s.get(block, "resid_sum") if given else None)
    on_exemplars = {"O(X_I)": o1_xi, "O(X_B)": o1_xb, "O(X_O)": mean_over(s_post, xo_p1),
            "I(X_I)": mean_over(s_i, xi), "I(X_B)": mean_over(s_i, xb), "I(X_O)": mean_over(s_i, xo_p1),
            "B(X_I)": mean_over(s_b, xi), "B(X_B)": mean_over(s_b, xb), "B(X_O)": mean_over(s_b, xo_p1)}
    ri, rb = np.maximum(i_id, 0).mean(0), np.maximum(b_id, 0).mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(ri + rb > 0, ri / (ri + rb), np.nan)
    with np.errstate(invalid="ignore"):
        scale = _scale_quantities(block, stim, xi, xb, i_id, b_id, opts, measured)
    return BlockMeasures(
        block=block.name, index=block.index, channels=block.channels, responses_to_exemplars=on_exemplars,
        m_p1=m1, m_p2=m2, m_p1_coded=m1c, m_p2_coded=m2c,
        branch_gain=block.branch_gain, conv_magnitude=block.conv_magnitude, gain_kind=block.gain_kind,
        b_at_xi=on_exemplars["B(X_I)"],
        rho_tuning=_spearman_columns(i_id, b_id, True) if opts.tuning else np.full(i_id.shape[1], np.nan),
        rho_tuning_all=_spearman_columns(i_id, b_id, False) if opts.tuning else np.full(i_id.shape[1], np.nan),
        contribution_share=share,
        scale=scale, zoom=_zoom_curves(block, stim, xi, xo_p2))


def measure_all(rmap: ResidualMap, resp: Mapping, opts: MeasureOptions = MeasureOptions(),
                stimuli: Mapping[int, BlockStimuli] | None = None,
                exemplars: Mapping[int, Mapping[str, np.ndarray]] | None = None) -> list[BlockMeasures]:
    """:func:`block_measures` for every block of ``rmap``, in order; ``stimuli`` (block index ->
    :class:`BlockStimuli`) replaces the exemplars where given (a block missing from it has none).

    ``exemplars`` optionally maps a block index to its fixed stimuli (see :func:`block_measures`).

    Example:
        >>> ms = measure_all(rmap, responses)  # doctest: +SKIP
    """
    if stimuli is None:
        return [block_measures(b, resp, opts, exemplars=(exemplars or {}).get(b.index)) for b in rmap]
    return [block_measures(b, resp, opts, stimuli.get(b.index) or _no_stimuli(b, stimuli)) for b in rmap]


def _no_stimuli(block: Block, others: Mapping[int, BlockStimuli]) -> BlockStimuli:
    """Stimuli of a block that was not given any (e.g. the first block under featviz): all missing."""
    first = next(iter(others.values()), None)
    if first is None:
        raise ValueError("measure_all: stimuli given for no block")
    none = np.full((block.channels, 1), -1, np.int64)
    return BlockStimuli(first.responses, none, none, none, none, first.source)


def p2_selected(bm: BlockMeasures) -> np.ndarray:
    """Boolean (C,): the scale-invariant channels S* of the P2 criterion, ``SM_B > 0 ∧ 2/3 < M < 3/2`` (P2).

    C8 counts them, C9 tests their zoom curves and C10 lesions them; undefined SM_B counts as not selected.

    Example:
        >>> p2_selected(bm).sum()  # doctest: +SKIP
    """
    with np.errstate(invalid="ignore"):
        return (bm.category("p2") == MIX) & (np.nan_to_num(bm.scale["sm_b"], nan=0.0) > 0)


def p2_anti(bm: BlockMeasures) -> np.ndarray:
    """Boolean (C,): mix channels (P2) whose block prefers the zoomed-*out* input, ``SM_B < 0`` (C10's anti set).

    Example:
        >>> (p2_anti(bm) & p2_selected(bm)).any()  # doctest: +SKIP
        False
    """
    with np.errstate(invalid="ignore"):
        return (bm.category("p2") == MIX) & (np.nan_to_num(bm.scale["sm_b"], nan=0.0) < 0)
