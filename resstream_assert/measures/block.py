"""Every per-channel quantity of one block (:class:`BlockMeasures`), from the probe set's responses
and either its top-k exemplars or given stimuli (:class:`BlockStimuli`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from resstream_assert.discovery.residual_map import Block, ResidualMap
from resstream_assert.measures.ratios import (MIX, MIX_BAND, MeasureOptions, categorize, exemplars, mean_over,
                                              mix_ratios)
from resstream_assert.measures.scale import scale_quantities, zoom_curves


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
        return np.any((self.xi >= 0) | (self.xb >= 0) | (self.xo_p1 >= 0) | (self.xo_p2 >= 0), axis=1)


#: The sites whose exemplars the measures use (X_I, X_B, X_O in P1's and P2's convention).
EXEMPLAR_SITES = ("skip_out", "branch_out", "resid_post", "resid_sum")


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
        gi, gb, go1, go2 = (_given_exemplars(exemplars, site, r.get(block, site), opts.k) for site in EXEMPLAR_SITES)
        stimuli = BlockStimuli(resp, gi, gb, go1, go2, source="given")
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
    m1c, m1, o1_xi, o1_xb = mix_ratios(i_id, b_id, post, xi, xb, opts.floor, s_post if given else None)
    m2c, m2, _, _ = mix_ratios(i_id, b_id, total, xi, xb, opts.floor, s.get(block, "resid_sum") if given else None)
    on_exemplars = {"O(X_I)": o1_xi, "O(X_B)": o1_xb, "O(X_O)": mean_over(s_post, xo_p1),
            "I(X_I)": mean_over(s_i, xi), "I(X_B)": mean_over(s_i, xb), "I(X_O)": mean_over(s_i, xo_p1),
            "B(X_I)": mean_over(s_b, xi), "B(X_B)": mean_over(s_b, xb), "B(X_O)": mean_over(s_b, xo_p1)}
    ri, rb = np.maximum(i_id, 0).mean(0), np.maximum(b_id, 0).mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(ri + rb > 0, ri / (ri + rb), np.nan)
    with np.errstate(invalid="ignore"):
        scale = scale_quantities(block, stim, xi, xb, i_id, b_id, opts, measured)
    return BlockMeasures(
        block=block.name, index=block.index, channels=block.channels, responses_to_exemplars=on_exemplars,
        m_p1=m1, m_p2=m2, m_p1_coded=m1c, m_p2_coded=m2c,
        branch_gain=block.branch_gain, conv_magnitude=block.conv_magnitude, gain_kind=block.gain_kind,
        b_at_xi=on_exemplars["B(X_I)"],
        rho_tuning=_spearman_columns(i_id, b_id, True) if opts.tuning else np.full(i_id.shape[1], np.nan),
        rho_tuning_all=_spearman_columns(i_id, b_id, False) if opts.tuning else np.full(i_id.shape[1], np.nan),
        contribution_share=share,
        scale=scale, zoom=zoom_curves(block, stim, xi, xo_p2))


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
