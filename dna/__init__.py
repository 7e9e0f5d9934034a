"""Enhancer design in the DNA world.

Modules: ``sequences`` (tokens, one-hot, FASTA), ``data`` (Gosai CSV loader, simulated default,
splits, DataModule), ``simulator`` (the simulated MPRA and its ground truth), ``oracle``
(Pred-Activity oracles and the accessibility classifier; ``python -m dna.oracle`` trains them).
"""
