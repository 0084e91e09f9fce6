"""Object detection internals (issue 16) behind `kerastransfer.DetectionModel`.

* `targets.py`: the FCOS location grid and the numpy encoding of KerasHub-style
  targets (`{"boxes": xyxy pixels, "labels": ints}` per image) into one dense
  training array per image;
* `losses.py`: `DetectionLoss` (Keras's binary focal loss, GIoU, centerness
  BCE);
* `head.py`: the FPN neck and the FCOS head layers and how they are wired;
* `agreement.py`: `box_agreement`, the share of one detector's boxes another
  finds (same class, IoU >= 0.5): how an int8 export is compared.

The numpy decoding (scores, per-class NMS, boxes mapped back to each image's own
size) lives in `kerastransfer.runtime.detection`, shared by `DetectionModel.predict`
and the TensorFlow-free `DetectionPredictor`. Nothing is imported here so
`targets.py` stays importable without Keras.
"""
