"""A run's settings: every option of the plugin (also an ini key), validated once, at start-up.

``OPTIONS`` is the one table of options (name, type, default, help, check); the pytest
plugin turns it into command-line flags and ini keys, and :func:`build_run_config` turns the
values into a :class:`RunConfig`, refusing any value that could not give an honest result
(an alpha of 2, an unknown claim id, a negative seed, ...) with a :class:`ConfigError` that
says which option and what to do. Nothing here imports torch.

Three rooms: :mod:`.checks` (one check per kind of value), :mod:`.options` (the table and the
KEY=VALUE parsers), :mod:`.run` (RunConfig and build_run_config). Import from here.
"""

from resstream_assert.config.checks import STIMULI
from resstream_assert.config.options import (DEFAULT_MODEL, FEATVIZ_OPTIONS, OPTION, OPTIONS, Option, check_value,
                                             parse_intervention_options, parse_lesion_options)
from resstream_assert.config.run import RunConfig, build_run_config, checked_normalisation
from resstream_assert.errors import ConfigError

__all__ = ["DEFAULT_MODEL", "FEATVIZ_OPTIONS", "OPTION", "OPTIONS", "STIMULI", "ConfigError", "Option", "RunConfig",
           "build_run_config", "check_value", "checked_normalisation", "parse_intervention_options",
           "parse_lesion_options"]
