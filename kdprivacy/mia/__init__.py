"""Membership inference: score each model once, turn the scores into attacks, measure the attacks.

``scoring`` (one forward pass: per-token statistics on the shared evaluation set and the RMIA population),
``registry`` (the attack registry ``ATTACKS``: names, traits, paper names; standard library only),
``attacks`` (the score functions), ``perturb`` (MoPe's seeded weight
noise), ``blocks`` (MoPe one decoder block at a time), ``blind`` (the text-only baseline), ``shadows`` (the
IN/OUT shadow assignment, LiRA and RMIA with shadow references) and ``metrics``
(AUC, TPR at low FPR, bootstrap CIs, paired differences). Importing this package, ``mia.registry``
or ``mia.attacks`` does not import torch; ``mia.registry`` imports nothing outside the standard library
(the config schema reads the attack names at every Snakefile parse).
"""
