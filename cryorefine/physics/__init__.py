"""The forward model: RELION's projection, origin shift and CTF, on torch tensors."""
