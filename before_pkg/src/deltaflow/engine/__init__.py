"""The derivation in numpy: activations ``g``, costs ``C``, and the dynamic programme.

:mod:`.activations` and :mod:`.losses` hold the small protocols and their registries,
:mod:`.backprop` the forward sweep and the backward recursion on workspace buffers, and
:mod:`.blas` the matrix products they run on. Nothing here knows of training loops,
files or the command line.
"""
