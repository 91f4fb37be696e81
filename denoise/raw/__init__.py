"""The raw-image layer: DNG reading and writing, Bayer maths, noise models and blind noise estimation, the
competition's metrics, a simple renderer and tile geometry. Pure functions over arrays; nothing here knows about
networks, configs or training."""
