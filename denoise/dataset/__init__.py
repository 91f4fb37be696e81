"""Reading and writing raw frames, Bayer maths and the training data pipeline."""
