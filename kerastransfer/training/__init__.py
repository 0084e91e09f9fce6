"""The shared training core: the phased loop and everything it drives.

Modules: `loop` (the phased fit), `phases` (what trains), `optimizers` (per-group
learning rates), `batchnorm`, `schedules`, `lr_finder`, `checkpoint` (resume and the
NaN guard), `features` (cached backbone features), `distribute`.
"""
