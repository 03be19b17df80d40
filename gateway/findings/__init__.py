"""Drafting findings from images with trainable models."""
