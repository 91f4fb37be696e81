"""raw-denoise: train and run RAW-domain (Bayer) image denoisers."""

__version__ = "0.1.0"
