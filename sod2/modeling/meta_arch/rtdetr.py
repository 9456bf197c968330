"""
RT-DETR (Zhao et al., 2024, "DETRs Beat YOLOs on Real-time Object Detection"; the reference
is lyuwenyu/RT-DETR ``rtdetr_pytorch``, v1) as a Detectron2 meta-architecture: a backbone
(ResNet-vd), a hybrid encoder, the decoder with query selection, contrastive denoising in
training, and a set criterion (Hungarian matching, VFL + L1 + GIoU).

The forward runs in named steps:

1. :meth:`RTDETR.preprocess_image`: RGB in [0, 1] (``(x - pixel_mean) / pixel_std`` with
   mean 0 and std 255: the reference has no mean/std normalisation), batched into an
   :class:`ImageList` padded with 0 to a multiple of ``size_divisibility`` (32, so that the
   encoder's top-down fusion sees maps of matching sizes). Reference-sized inputs (640x640)
   are not padded at all;
2. backbone -> encoder -> decoder (:class:`~sod2.modeling.transformer.RTDETRDecoder`);
3. training: :meth:`RTDETR.prepare_targets` (the objects of ``instances`` as normalised cxcywh
   boxes), the denoising queries (``self.denoising``, training only), the decoder, then
   :meth:`RTDETR.loss_sets` splits its outputs into the criterion's output sets and the
   criterion returns the loss dict;
4. inference: :meth:`RTDETR.inference`: the eval layer's sigmoid scores, top-K over all
   (query, class) pairs (no NMS, no score threshold, a query may appear with several
   classes), boxes rescaled to each input's requested output size, x and y separately (the
   reference's non-aspect-preserving 640x640 resize maps back exactly). Boxes are not clipped
   to the image and none is dropped, as in the reference (``clip_boxes=True`` clips).

Multi-scale training resizes whole batches outside the model (``train.multiscale``,
:mod:`sod2.engine.multiscale`, RT-DETR's size list with nearest interpolation); the model
takes those float 0-255 images like the mapper's uint8 ones.

Box convention inside the model: normalised (cx, cy, w, h) in [0, 1] relative to the PADDED
batch tensor (W_p, H_p); with unpadded inputs (the reference always resizes to 640x640) this
is the reference's normalisation by the image size.

Ignored boxes and regions: sod2's mapper keeps them out of ``instances`` (they travel as
``ignore_instances``, which RT-DETR does not use, like the reference, which drops crowd boxes),
so every box of ``instances`` is a target. A box of ``instances`` with a negative class (a
class-agnostic region, if another data path left one there) or an empty extent after clipping
to the image is dropped as well.

DDP: a parameter that takes no part in the loss on one process makes DistributedDataParallel
fail (or wait forever) unless ``find_unused_parameters=True``, which the reference sets and
which costs a traversal of the autograd graph every iteration. Here every trainable parameter
always takes part instead: when this process builds no denoising queries (its batch has no
ground truth box, or ``num_denoising`` is 0) the denoising embedding is added to the loss with
weight 0, which changes no value and gives it a zero gradient to all-reduce (a method's
criterion that adds modules needing positives does the same in its ``finish``). So RT-DETR
trains with the default ``train.ddp.find_unused_parameters=False``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor, nn
from torchvision.ops import box_convert

from ..checks import check_size, warn_non_finite_images
from ..criterion.set_criterion import OutputSet, SetCriterion
from ..training import zero_dependency
from ..transformer.rtdetr_decoder import DecoderOutput, RTDETRDecoder

__all__ = ["RTDETR"]

@META_ARCH_REGISTRY.register()
class RTDETR(nn.Module):
    """RT-DETR detector (see the module docstring).

    Args:
        backbone: a Detectron2 ``Backbone`` (ResNet-vd) returning a dict of feature maps.
        encoder: ``HybridEncoder``: dict of maps -> list of L maps (strides 8/16/32).
        decoder: ``RTDETRDecoder``: ``(maps, denoising, extras) -> DecoderOutput``.
        criterion: ``SetCriterion`` (or a method's subclass): ``(output sets, targets,
            denoising) -> dict of losses``; its ``required_outputs`` are the decoder's
            ``extras`` in training.
        denoising: ``ContrastiveDenoising`` (``(targets, num_queries) -> DenoisingQueries or
            None``), used in training only; None: no denoising queries.
        num_classes: C (sigmoid classification, no background class).
        num_top_queries: K, the detections per image at inference (300 as the reference).
        pixel_mean, pixel_std: normalisation in the model's RGB order; the reference's input
            is RGB in [0, 1], i.e. mean 0 and std 255 for 0-255 images.
        input_format: channel order of the incoming images ("RGB" or "BGR", the mapper's
            ``image_format``); BGR images are flipped to RGB first.
        size_divisibility: pad the batch to a multiple of it (32: the largest stride).
        clip_boxes: clip the output boxes to the output image. The reference does not (a box
            may reach outside the image), which is the default here.
    """

    def __init__(self, *, backbone: nn.Module, encoder: nn.Module, decoder: RTDETRDecoder, criterion: SetCriterion,
                 denoising: Optional[nn.Module] = None, num_classes: int, num_top_queries: int = 300,
                 pixel_mean: Sequence[float] = (0.0, 0.0, 0.0), pixel_std: Sequence[float] = (255.0, 255.0, 255.0),
                 input_format: str = "RGB", size_divisibility: int = 32, clip_boxes: bool = False):
        super().__init__()
        check_size("RTDETR", "num_classes", num_classes)
        check_size("RTDETR", "num_top_queries", num_top_queries)
        check_size("RTDETR", "size_divisibility", size_divisibility, minimum=0)
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"RTDETR: input_format must be RGB or BGR, got {input_format!r}")
        if decoder.num_classes != num_classes:
            raise ValueError(f"RTDETR: num_classes {num_classes} but the decoder predicts {decoder.num_classes}")
        self.backbone = backbone
        self.encoder = encoder
        self.decoder = decoder
        self.criterion = criterion
        self.denoising = denoising
        self.num_classes = num_classes
        self.num_top_queries = num_top_queries
        self.input_format = input_format
        self.size_divisibility = size_divisibility
        self.clip_boxes = clip_boxes
        # not saved in checkpoints: they are configuration, not weights
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def num_queries(self) -> int:
        """Q, the matching queries that the query selection picks."""
        return int(self.decoder.query_selection.num_queries)

    # ------------------------------------------------------------------ steps
    def preprocess_image(self, batched_inputs: List[Dict[str, Tensor]]) -> ImageList:
        """(3, H_i, W_i) images (uint8 or float 0-255, ``input_format`` order) -> normalised
        RGB, batched and padded with 0 (after normalisation: black, the reference's zoom-out
        fill) to a multiple of ``size_divisibility``. Non-finite pixels give one warning line
        (:func:`sod2.modeling.checks.warn_non_finite_images`)."""
        images = []
        for x in batched_inputs:
            img = x["image"].to(self.device, non_blocking=True).to(self.pixel_mean.dtype)
            if self.input_format == "BGR":
                img = img.flip(0)
            images.append((img - self.pixel_mean) / self.pixel_std)
        images = ImageList.from_tensors(images, self.size_divisibility, pad_value=0.0)
        warn_non_finite_images(images.tensor, "RTDETR", batched_inputs, self.training)
        return images

    def prepare_targets(self, gt_instances: List[Instances], image_sizes: List[Tuple[int, int]],
                        padded_size: Tuple[int, int]) -> List[Dict[str, Tensor]]:
        """The criterion's targets: per image ``labels`` (N_i,) int64 and ``boxes`` (N_i, 4)
        normalised cxcywh of the padded batch size.

        Boxes (XYXY pixels) are clipped to their image; boxes with no extent and boxes with a
        negative class are dropped (module docstring).
        """
        hp, wp = padded_size
        scale = torch.tensor([wp, hp, wp, hp], dtype=torch.float32, device=self.device)
        targets = []
        for inst, (h, w) in zip(gt_instances, image_sizes):
            boxes = inst.gt_boxes.tensor.to(device=self.device, dtype=torch.float32).clone()
            boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0.0, max=float(w))
            boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0.0, max=float(h))
            labels = inst.gt_classes.to(device=self.device, dtype=torch.int64)
            keep = (labels >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, labels = boxes[keep], labels[keep]
            cxcywh = torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)
            targets.append({"labels": labels, "boxes": cxcywh / scale})
        return targets

    @staticmethod
    def loss_sets(outputs: DecoderOutput) -> List[OutputSet]:
        """The criterion's output sets from a training :class:`DecoderOutput`, in the
        reference's order: the last decoder layer (name ``""``), the other layers
        (``"aux_<i>"``), the query selection's top-Q (``"enc"``), then every layer's denoising
        queries (``"dn_<i>"``, ``denoising=True``, present only with denoising queries). Each
        decoder set is the layer's :class:`DecoderLayerOutput` restricted to its queries
        (:meth:`DecoderLayerOutput.split`)."""
        num_dn = int(outputs.num_denoising)
        last = len(outputs.layers) - 1
        matching, denoising = [], []
        for i, layer in enumerate(outputs.layers):
            dn, match = layer.split(num_dn)
            matching.append(OutputSet("" if i == last else f"aux_{i}", match))
            if num_dn > 0:
                denoising.append(OutputSet(f"dn_{i}", dn, denoising=True))
        return [matching[-1]] + matching[:-1] + [OutputSet("enc", outputs.encoder)] + denoising

    def _zero_dependency(self, denoising_used: bool) -> Optional[Tensor]:
        """0 * (sum of the denoising module's parameters) when they took no part in this
        iteration (module docstring: DDP without ``find_unused_parameters``), else None."""
        if self.denoising is None or denoising_used:
            return None
        return zero_dependency(self.denoising)

    def top_k(self, logits: Tensor, boxes: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The reference's top-K over queries x classes (also the exported graph's, sod2.export).

        Args:
            logits: (B, Q, C) class logits; boxes: (B, Q, 4) normalised cxcywh.
        Returns:
            scores (B, K) sigmoid, labels (B, K) int64, boxes (B, K, 4) normalised XYXY,
            K = min(num_top_queries, Q * C), by decreasing score.
        """
        B, Q, C = logits.shape
        k = min(self.num_top_queries, Q * C)
        scores, index = logits.sigmoid().flatten(1).topk(k, dim=1)
        labels = index % C
        query = torch.div(index, C, rounding_mode="floor")
        xyxy = box_convert(boxes, "cxcywh", "xyxy").gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        return scores, labels, xyxy

    @torch.no_grad()
    def inference(self, logits: Tensor, boxes: Tensor, padded_size: Tuple[int, int],
                  image_sizes: List[Tuple[int, int]], output_sizes: List[Tuple[int, int]]) -> List[Instances]:
        """The reference's post-processing: top-K over queries x classes, no NMS, no threshold.

        Args:
            logits: (B, Q, C) class logits of the eval layer.
            boxes: (B, Q, 4) normalised cxcywh of the padded batch (H_p, W_p) = ``padded_size``.
            image_sizes: [(h_i, w_i)] of the inputs (unpadded).
            output_sizes: [(H_i, W_i)] the sizes to report boxes in (the original images).
        Returns:
            per image, Instances of size (H_i, W_i) with K = min(num_top_queries, Q * C)
            detections by decreasing score: ``pred_boxes`` XYXY (a normalised coordinate x
            maps to ``x * W_p * W_i / w_i``: the input pixel, rescaled to the output size;
            not clipped unless ``clip_boxes``), ``scores`` (sigmoid), ``pred_classes``. A
            detection whose box or score is not finite (a diverged model, non-finite input
            pixels) is dropped, as Detectron2's ``fast_rcnn_inference`` does: fewer than K then.
        """
        scores, labels, xyxy = self.top_k(logits, boxes)
        hp, wp = padded_size
        results = []
        for i, ((h, w), (out_h, out_w)) in enumerate(zip(image_sizes, output_sizes)):
            # one factor per axis (the reference multiplies by the original size directly, and
            # for unpadded inputs wp * out_w / w == out_w exactly)
            sx, sy = wp * out_w / w, hp * out_h / h
            b = xyxy[i] * xyxy.new_tensor([sx, sy, sx, sy])
            s_i, l_i = scores[i], labels[i]
            finite = torch.isfinite(b).all(dim=1) & torch.isfinite(s_i)
            if not bool(finite.all()):  # a diverged model or non-finite input pixels
                b, s_i, l_i = b[finite], s_i[finite], l_i[finite]
            pred_boxes = Boxes(b)
            if self.clip_boxes:
                pred_boxes.clip((out_h, out_w))
            results.append(Instances((out_h, out_w), pred_boxes=pred_boxes, scores=s_i, pred_classes=l_i))
        return results

    # ---------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """Detectron2's contract: a dict of losses in training; in inference
        ``[{"instances": Instances}]`` in each input's "height" x "width" (default: the input
        size)."""
        images = self.preprocess_image(batched_inputs)
        features = self.encoder(self.backbone(images.tensor))
        padded_size = tuple(images.tensor.shape[-2:])
        if self.training:
            assert "instances" in batched_inputs[0], "Instance annotations are missing in training!"
            targets = self.prepare_targets([x["instances"] for x in batched_inputs], images.image_sizes,
                                           padded_size)
            denoising = self.denoising(targets, self.num_queries) if self.denoising is not None else None
            outputs = self.decoder(features, denoising, self.criterion.required_outputs)
            losses = self.criterion(self.loss_sets(outputs), targets, denoising)
            zero = self._zero_dependency(denoising is not None)
            if zero is not None:
                key = "loss_vfl" if "loss_vfl" in losses else next(iter(losses))
                losses[key] = losses[key] + zero
            return losses
        outputs = self.decoder(features, None)
        layer = outputs.layers[-1]  # in eval the decoder emits only its eval layer
        num_dn = int(outputs.num_denoising)
        output_sizes = [(x.get("height", s[0]), x.get("width", s[1])) for x, s in zip(batched_inputs,
                                                                                   images.image_sizes)]
        results = self.inference(layer.logits[:, num_dn:], layer.boxes[:, num_dn:], padded_size,
                                 images.image_sizes, output_sizes)
        return [{"instances": r} for r in results]
