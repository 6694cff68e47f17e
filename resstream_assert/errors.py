"""Error types. Every error a user can cause says what was wrong and what to do.

They are plain exceptions with a one-paragraph message; nothing here imports torch.
"""

from __future__ import annotations

from typing import Any


class ResstreamError(Exception):
    """Base class of every error this package raises on purpose."""


class ModelSpecError(ResstreamError, ValueError):
    """A model spec (``zoo:NAME``, ``torchvision:ARCH@FILE``, ...) could not be parsed or resolved."""


class CheckpointError(ResstreamError):
    """A weights file is missing, corrupt, unsafe, or does not fit the architecture."""


class DiscoveryError(ResstreamError):
    """No residual block could be found, or the graph could not be analysed."""


class CaptureError(ResstreamError):
    """Activation capture failed or was unfaithful to the plain forward pass."""


class ProbeError(ResstreamError):
    """The probe set (images) is missing, empty, or unreadable."""


class BackendUnavailable(ResstreamError):
    """The requested backend (e.g. ONNX) is not available for this model or machine."""


class OutputError(ResstreamError):
    """A file or folder to write (a report, an export, the cache) is a directory, or cannot be written."""


class ResstreamWarning(UserWarning):
    """Something was guessed or repaired (an input size, a damaged cache entry); the run goes on."""


class InterventionError(ResstreamError):
    """An intervention (gain or shortcut scaling, attribution) cannot run on this model, or changed it."""


class ConfigError(ResstreamError, ValueError):
    """An option value that cannot be used (the plugin reports it as a usage error, exit status 4)."""


class CompareFailError(ConfigError):
    """A malformed ``--resstream-compare-fail`` expression (a usage error on the command line)."""


class CacheEntryError(ResstreamError, ValueError):
    """A cache file that was not written for its key, or whose content changed since (it is recomputed)."""


class MergeError(ResstreamError, ValueError):
    """Reports that cannot be merged (different settings, or the same result twice)."""


class DegenerateDataError(ResstreamError, ValueError):
    """The data cannot support the test (constant input, empty group, < 2×2 table, ...).

    Raised instead of returning NaN so a claim can report ``not_applicable`` or
    ``inconclusive`` with the message as its reason.
    """


class FeatvizUnavailable(ResstreamError):
    """Feature visualization cannot run on this model (e.g. an ONNX file: no gradients)."""


class BaselineDriftError(AssertionError):
    """A claim result drifted from the baseline beyond tolerance; the message is the diff.

    ``diff`` is a :class:`resstream_assert.gate.baseline.BaselineDiff` (anything with
    ``baseline_path`` and ``table()``).
    """

    def __init__(self, diff: Any) -> None:
        self.diff = diff
        where = f" {diff.baseline_path}" if diff.baseline_path else ""
        super().__init__(f"residual-stream statistics drifted from the baseline{where}\n{diff.table()}")


class ClaimAssertionError(AssertionError):
    """A claim did not reach the expected verdict. ``.result`` holds the full
    :class:`~resstream_assert.results.ClaimResult`; the message is a header line plus the
    per-block table with offending blocks marked."""

    def __init__(self, result: Any, expected: Any = "holds") -> None:
        from resstream_assert.results import Verdict

        self.result = result
        self.expected = Verdict(expected)
        super().__init__(self._message())

    def _message(self) -> str:
        from resstream_assert.formatting import feffect, fp

        r, exp = self.result, self.expected
        head = f"{r.claim} ({r.title}): expected {exp.value}, got {r.verdict.value}"
        if r.reason:
            head += f" -- {r.reason}"
        summary = (f"  effect {feffect(r.effect, r.ci_low, r.ci_high)}, p={fp(r.p_value)}, "
                   f"p_adj={fp(r.p_adjusted)}, n={r.n}, seed={r.seed}"
                   + (f", model={r.model}" if r.model else "") + f", backend={r.backend}"
                   + ("" if r.stimuli == "exemplars" else f", stimuli={r.stimuli}"))
        table = r.table(mark=lambda row: row.verdict != exp)
        return f"{head}\n{table}\n{summary}"  # the answer first: which blocks, then the claim's numbers

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.result, self.expected))
