"""Membership inference: score each model once, turn the scores into attacks, measure the attacks.

``scoring`` (one forward pass: per-token statistics on the shared evaluation set and the RMIA population),
``attacks`` (the attack registry ``ATTACKS`` and the score functions), ``perturb`` (MoPe's seeded weight
noise), ``blocks`` (MoPe one decoder block at a time), ``blind`` (the text-only baseline) and ``metrics``
(AUC, TPR at low FPR, bootstrap CIs, paired differences). Importing this package, or ``mia.attacks``,
does not import torch (the config schema reads the attack names at every Snakefile parse).
"""
