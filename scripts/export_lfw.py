#!/usr/bin/python3
"""Writes scikit-image's lfw_subset.npy (200 grey 25x25 images in [0, 1]: 100 faces, then 100
non-faces) as binary PGM files: FACES_DIR/lfw_face_NNN.pgm and NONFACES_DIR/lfw_nonface_NNN.pgm.
Usage: export_lfw.py LFW_SUBSET_NPY FACES_DIR NONFACES_DIR"""
import os
import sys

import numpy as np


def main(npy, faces, nonfaces):
    images = np.load(npy)
    if images.shape != (200, 25, 25):
        sys.exit(f"export_lfw: {npy} has shape {images.shape}, expected (200, 25, 25)")
    for i, img in enumerate(images):
        folder, name = (faces, "lfw_face") if i < 100 else (nonfaces, "lfw_nonface")
        pixels = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
        with open(os.path.join(folder, f"{name}_{i % 100:03d}.pgm"), "wb") as f:
            f.write(b"P5\n25 25\n255\n" + pixels.tobytes())


if __name__ == "__main__":
    main(*sys.argv[1:4])
