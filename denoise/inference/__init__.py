"""Inference on packed Bayer frames: overlap tiles, x8 TTA, noise conditioning, ``denoise_frame`` (the one frame
denoiser: validation, infer, submit and the comparison script all call it) and the classical baselines."""
