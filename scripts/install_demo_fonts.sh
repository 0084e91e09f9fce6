#!/bin/sh
# Fonts used by `python -m kerastransfer.demo.pretrain` to render the glyph
# classes of the demo's pretraining source (kerastransfer/demo/glyphs.py).
# Only pretraining needs them; the demo and the tests use the shipped weights.
set -e
apt-get update
apt-get install -y fonts-dejavu-core fonts-dejavu-extra fonts-liberation \
    fonts-freefont-ttf fonts-urw-base35 fonts-texgyre
