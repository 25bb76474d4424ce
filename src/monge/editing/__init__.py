"""Editing in a generative model's spaces: latent traversals, higher-resolution extrapolation and
score distillation through a decoder."""
