"""Configs, presets, runs on disk, the run cache, the training loop and run evaluation.

Layer 4 (imports core, nets, data, metrics). A new preset or training feature goes here.
"""
