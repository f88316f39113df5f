"""Unpaired translation of synthetic micrographs into real-looking ones (mask-guided PatchNCE GAN, optional CycleGAN cycle)."""
