"""Memorization: what a model reproduces of its training samples, and what a student inherits of it.

``extraction`` (one greedy pass per model: positional match, exact and approximate extraction, secrets,
canary exposure), ``inheritance`` (teacher x student memorization; membership vs memorization) and
``utility`` (ROUGE-L and the utility of a model on held-out dev prompts).
"""
