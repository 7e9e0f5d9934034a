"""Online GeMPO on MuJoCo: a flow-policy actor-critic (and a SAC baseline) on gymnasium tasks.

``python -m control.train env=walker2d`` trains; ``python -m control.evaluate
checkpoint=...`` evaluates a checkpoint. The actor update uses the shared core
(:mod:`gempo.policies`, :mod:`gempo.losses`, :mod:`gempo.weights`); this package holds only
what is specific to reinforcement learning: environments, replay, critics, the loop.
"""
