"""Inference on packed Bayer frames: overlap tiles, x8 TTA, ``denoise_frame`` (the one frame denoiser: validation,
infer, submit and the comparison script all call it), DNG files into a folder (``files``) and the classical
baselines. A noise-aware model conditions itself (``denoise.model.nafnet``)."""
