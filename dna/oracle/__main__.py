"""``python -m dna.oracle``: train the oracles (:func:`dna.oracle_training.main`)."""

from dna.oracle_training import main

main()
