"""A deterministic stand-in detector for the sliced-inference tests: it finds the
axis-aligned bright rectangles of its input (connected components above 128 in channel 0),
class = channel 1 // 64, score = visible area / 10000, so boxes and scores are exact and
the caller's coordinate bookkeeping can be checked to the pixel."""
import cv2
import numpy as np
import torch
from detectron2.structures import Boxes, Instances
from torch import nn


def detect(image_chw: np.ndarray):
    """(boxes (N, 4) XYXY, scores (N,), classes (N,)) of the bright rectangles of an image."""
    mask = (image_chw[0] > 128).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    boxes, scores, classes = [], [], []
    for x, y, w, h, area in stats[1:]:
        boxes.append([x, y, x + w, y + h])
        scores.append(area / 10000.0)
        classes.append(int(image_chw[1, y, x]) // 64)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
            np.asarray(classes, np.int64))


class FakeDetector(nn.Module):
    """``model(list of {"image", "height", "width"}) -> list of {"instances"}``; boxes are
    scaled from the input tensor to (height, width) as detector_postprocess does. Records
    the number of images of each call in ``calls``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.calls = []

    @property
    def device(self):
        return self.weight.device

    def forward(self, batched_inputs):
        self.calls.append(len(batched_inputs))
        out = []
        for inp in batched_inputs:
            img = inp["image"]
            h, w = img.shape[1:]
            H, W = inp.get("height", h), inp.get("width", w)
            b, s, c = detect(img.cpu().numpy())
            b = b * np.array([W / w, H / h, W / w, H / h], np.float32)
            inst = Instances((H, W))
            inst.pred_boxes = Boxes(torch.as_tensor(b, device=self.device))
            inst.scores = torch.as_tensor(s, device=self.device)
            inst.pred_classes = torch.as_tensor(c, device=self.device)
            out.append({"instances": inst})
        return out


def scene(height, width, rects):
    """(3, H, W) uint8 tensor with filled rectangles ``(x0, y0, x1, y1, class)``."""
    img = np.zeros((3, height, width), np.uint8)
    for x0, y0, x1, y1, c in rects:
        img[0, y0:y1, x0:x1] = 255
        img[1, y0:y1, x0:x1] = 64 * c + 10
    return torch.as_tensor(img)
