"""Backbones F_theta(x, c_noise): MLP (toys), UNet (digits), NCSN++ (CIFAR-10). Imported lazily by cmlearn.train.runs."""
