"""Residual networks and checkpoint files written the way public repositories write them.

``architectures`` holds model definitions in the idioms of well-known public code, each with
the residual structure a correct discoverer must find; ``checkpoints`` writes weights files
in the formats people publish (and the broken files people meet), each with the outcome a
correct loader must produce. The ``test_wild_*`` modules check the package against them.
"""
