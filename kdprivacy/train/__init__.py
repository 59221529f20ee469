"""Training: the deterministic PyTorch loop (:mod:`.loop`), its losses (:mod:`.losses`), data parallelism
(:mod:`.distributed`), the pool guards of everything a model trains on (:mod:`.pools`), the validated job
inputs (:mod:`.runs`) and the workflow's training jobs (:mod:`.jobs`). The KD methods are in
:mod:`kdprivacy.kd`.
"""
