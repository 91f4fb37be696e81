"""Tiled, test-time-augmented inference on packed Bayer frames."""
