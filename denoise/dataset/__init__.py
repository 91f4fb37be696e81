"""The training data pipeline: pairs, the frame cache, crops, Bayer-preserving flips, synthetic pairs, loaders and
the whole validation frames."""
