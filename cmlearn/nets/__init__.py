"""Backbones F_theta(x, c_noise): MLP (toys), UNet (digits), NCSN++ (CIFAR-10), built by cmlearn.train.runs.

cmlearn.nets.layers holds what they share (the Fourier embedding of c_noise).
"""
