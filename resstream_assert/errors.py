"""Error types. Every error a user can cause says what was wrong and what to do.

They are plain exceptions with a one-paragraph message; nothing here imports torch.
"""

from __future__ import annotations


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
