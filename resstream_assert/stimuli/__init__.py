"""Stimuli: the synthetic shape/texture generator, probe sets, and scale/control variants.

Example:
    >>> from resstream_assert.stimuli import embedded_probe, apply_variant
"""

from resstream_assert.stimuli.probe import ProbeSet, embedded_probe, folder_probe, load_probe
from resstream_assert.stimuli.synthetic import CLASS_NAMES, make_split, render
from resstream_assert.stimuli.variants import ZOOMS, apply_variant, parse_variant, zoom_variant

__all__ = ["CLASS_NAMES", "ProbeSet", "ZOOMS", "apply_variant", "embedded_probe", "folder_probe",
           "load_probe", "make_split", "parse_variant", "render", "zoom_variant"]
