"""Number formatting shared by result tables, assertion messages and reports (stdlib only).

One home for how a statistic, a p-value and an effect with its CI are written, so the
terminal, Markdown, HTML and ``ClaimAssertionError`` messages always agree.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["to_float", "fnum", "fp", "feffect", "fnorm"]


def to_float(x: Any) -> float:
    """Decode a JSON number of a report: ``None`` is NaN, ``"inf"``/``"-inf"`` are infinities.

    Example:
        >>> to_float(None), to_float("-inf"), to_float(2)
        (nan, -inf, 2.0)
    """
    if x is None:
        return math.nan
    return float(x)  # also "inf", "-inf", "nan"


def fnum(x: Any, digits: int = 4) -> str:
    """A number in ``digits`` significant digits; NaN/None as ``nan``.

    Example:
        >>> fnum(0.123456), fnum(None), fnum(12)
        ('0.1235', 'nan', '12')
    """
    if isinstance(x, (bool, int)):
        return str(x)
    v = to_float(x)
    return "nan" if math.isnan(v) else f"{v:.{digits}g}"


def fp(p: Any) -> str:
    """A p-value: scientific below 1e-3.

    Example:
        >>> fp(0.00012), fp(0.25)
        ('1.2e-04', '0.2500')
    """
    v = to_float(p)
    if math.isnan(v):
        return "nan"
    return f"{v:.1e}" if v < 1e-3 else f"{v:.4f}"


def feffect(e: Any, lo: Any = None, hi: Any = None) -> str:
    """An effect with its CI: ``+0.310 [+0.120, +0.480]``.

    Example:
        >>> feffect(0.31, 0.12, 0.48)
        '+0.310 [+0.120, +0.480]'
    """
    ev, lv, hv = to_float(e), to_float(lo), to_float(hi)
    if math.isnan(ev):
        return "nan"
    ci = "" if math.isnan(lv) and math.isnan(hv) else f" [{lv:+.3f}, {hv:+.3f}]"
    return f"{ev:+.3f}{ci}"


def fnorm(norm: Any) -> str:
    """A model's input normalisation (its ``model_info["normalisation"]``: mean, std, source) in one line, as the
    pytest header and the reports state it.

    Example:
        >>> fnorm({"mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616], "source": "option"})
        'mean 0.4914 0.4822 0.4465 std 0.247 0.2435 0.2616 (from: option)'
    """
    if not norm:
        return "-"
    mean, std = (" ".join(f"{float(v):g}" for v in norm.get(k) or ()) for k in ("mean", "std"))
    return f"mean {mean} std {std} (from: {norm.get('source') or 'unknown'})"
