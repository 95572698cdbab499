"""Pieces shared by several method adapters (colour fixes, diffusion-model helpers)."""
