"""Triton kernels for the BAS training hot path, imported as ``wsol_fast.kernels``."""
