"""The NAFNet U-Net for packed Bayer input."""
