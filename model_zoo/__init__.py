"""Where the zoo's models are trained: ``python -m model_zoo.train NAME``.

Not part of the installed package: the trained weights and cards ship as package data of
``resstream_assert.zoo``, which is also where their architectures and registry live.
"""
