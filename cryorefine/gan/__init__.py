"""The learned half of cryorefine: a conditional GAN that maps simulated particles to realistic ones.

`models` holds the noise-injecting U-Net generator and the conditional PatchGAN, `losses` the
GAN + L1 + RPSD objective, `data` the paired sim/raw reader, `trainer` the one training loop and
`checkpoint` the saved model format.
"""
