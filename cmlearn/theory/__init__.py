"""Empirical checks of the paper's theory: order fits, Theorem 1, Theorem 2, Lemma 1, exact toy conditionals.

Layer 4 (imports core, nets, data, metrics). A new theorem or lemma check goes here.
"""
