"""The math of the paper: noise schedules, parameterization, exact-score mixtures, PF ODE, losses, sampling, editing.

Layer 1 (imports only `cmlearn.runtime`). A new sampler, loss or distance goes here.
"""
