"""
Detectron2's ``GeneralizedRCNN`` and ``RetinaNet`` with two additions, nothing else:

* sod2's input check: one warning line when a batch holds NaN or infinite pixels
  (:func:`sod2.modeling.checks.warn_non_finite_images`, in training and at inference);
* the feature-hook slot ``feature_hook`` (:mod:`.feature_hook`): an optional component called
  right after the backbone with a typed contract; its features replace the backbone's, its
  losses join the detector's (training), its per-image pictures come back under
  ``"visuals"`` (inference). ``feature_hook=None`` (the default) is exactly Detectron2's
  detector: same arguments, same weights, same outputs (tests/modeling/test_feature_hook.py).

sod2's configs build these (Faster/Cascade R-CNN, RetinaNet; CFINet's
:class:`~sod2.modeling.methods.cfinet.CFINetRCNN` derives from :class:`SOD2GeneralizedRCNN`;
SR-TOD is a feature hook), so every model that a config builds checks its input, whichever
tool builds it (trainer, ``instantiate(cfg.model)``, demo, benchmark).

``forward``/``inference`` below are Detectron2 0.6's ``GeneralizedRCNN.forward``/``inference``
and ``DenseDetector.forward`` with the hook call added after ``self.backbone(...)``; keep them
in step with Detectron2 (the equality test fails otherwise).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, RetinaNet
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor, nn

from ..checks import NonFiniteInputCheckMixin
from .feature_hook import FeatureHookInput, FeatureHookOutput

__all__ = ["SOD2GeneralizedRCNN", "SOD2RetinaNet"]


class _FeatureHookSlot:
    """The ``feature_hook`` attribute and :meth:`backbone_features` shared by both detectors."""

    feature_hook: Optional[nn.Module]

    def _set_feature_hook(self, feature_hook: Optional[nn.Module]) -> None:
        if feature_hook is not None and not isinstance(feature_hook, nn.Module):
            raise TypeError(f"{type(self).__name__}: feature_hook must be an nn.Module called as "
                            f"hook(features, FeatureHookInput) or None, got {type(feature_hook).__name__}")
        self.feature_hook = feature_hook

    def backbone_features(self, batched_inputs: List[Dict[str, Tensor]],
                          images: ImageList) -> Tuple[Dict[str, Tensor], FeatureHookOutput]:
        """The backbone's features, passed through the feature hook when there is one.

        Args:
            batched_inputs: the detector's inputs (each ``"image"`` (3, H, W) 0-255).
            images: ``self.preprocess_image(batched_inputs)``.
        Returns:
            (features the heads read, the hook's output: no losses and no visuals without a hook).
        """
        features = self.backbone(images.tensor)
        if self.feature_hook is None:
            return features, FeatureHookOutput(features)
        raw = ImageList.from_tensors([self._move_to_current_device(x["image"]) for x in batched_inputs],
                                     self.backbone.size_divisibility, pad_value=0.0,
                                     padding_constraints=self.backbone.padding_constraints).tensor
        out = self.feature_hook(features, FeatureHookInput(images, raw, self.input_format))
        if not isinstance(out, FeatureHookOutput):
            raise TypeError(f"{type(self.feature_hook).__name__} returned {type(out).__name__}, "
                            "not a FeatureHookOutput")
        return out.features, out

    @staticmethod
    def _with_visuals(processed: List[dict], hook_out: FeatureHookOutput) -> List[dict]:
        if hook_out.visuals is not None:
            for r, v in zip(processed, hook_out.visuals):
                r["visuals"] = v
        return processed


@META_ARCH_REGISTRY.register()
class SOD2GeneralizedRCNN(_FeatureHookSlot, NonFiniteInputCheckMixin, GeneralizedRCNN):
    """Detectron2's ``GeneralizedRCNN`` whose ``preprocess_image`` warns about non-finite
    input pixels, with the feature-hook slot.

    Args:
        feature_hook: None, or a module called as ``hook(features, FeatureHookInput) ->
            FeatureHookOutput`` after the backbone (:mod:`sod2.modeling.meta_arch.feature_hook`).
        kwargs: Detectron2's ``GeneralizedRCNN`` arguments.
    """

    @configurable  # a yacs config builds it as Detectron2's (no hook); LazyConfig passes keywords
    def __init__(self, *, feature_hook: Optional[nn.Module] = None, **kwargs):
        super().__init__(**kwargs)
        self._set_feature_hook(feature_hook)

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """Detectron2's ``GeneralizedRCNN.forward``; the hook's losses come after the
        detector's."""
        if not self.training:
            return self.inference(batched_inputs)

        images = self.preprocess_image(batched_inputs)
        if "instances" in batched_inputs[0]:
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        else:
            gt_instances = None

        features, hook_out = self.backbone_features(batched_inputs, images)

        if self.proposal_generator is not None:
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        else:
            assert "proposals" in batched_inputs[0]
            proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            proposal_losses = {}

        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        if self.vis_period > 0:
            storage = get_event_storage()
            if storage.iter % self.vis_period == 0:
                self.visualize_training(batched_inputs, proposals)

        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        losses.update(hook_out.losses)
        return losses

    def inference(self, batched_inputs: List[Dict[str, Tensor]],
                  detected_instances: Optional[List[Instances]] = None, do_postprocess: bool = True):
        """Detectron2's ``GeneralizedRCNN.inference``; with ``do_postprocess`` each image's
        dict also holds the hook's ``"visuals"`` when it returns some."""
        assert not self.training

        images = self.preprocess_image(batched_inputs)
        features, hook_out = self.backbone_features(batched_inputs, images)

        if detected_instances is None:
            if self.proposal_generator is not None:
                proposals, _ = self.proposal_generator(images, features, None)
            else:
                assert "proposals" in batched_inputs[0]
                proposals = [x["proposals"].to(self.device) for x in batched_inputs]

            results, _ = self.roi_heads(images, features, proposals, None)
        else:
            detected_instances = [x.to(self.device) for x in detected_instances]
            results = self.roi_heads.forward_with_given_boxes(features, detected_instances)

        if do_postprocess:
            assert not torch.jit.is_scripting(), "Scripting is not supported for postprocess."
            return self._with_visuals(GeneralizedRCNN._postprocess(results, batched_inputs, images.image_sizes),
                                      hook_out)
        return results


@META_ARCH_REGISTRY.register()
class SOD2RetinaNet(_FeatureHookSlot, NonFiniteInputCheckMixin, RetinaNet):
    """Detectron2's ``RetinaNet`` whose ``preprocess_image`` warns about non-finite input
    pixels, with the feature-hook slot.

    Args:
        feature_hook: as :class:`SOD2GeneralizedRCNN`'s.
        kwargs: Detectron2's ``RetinaNet`` arguments.
    """

    @configurable  # a yacs config builds it as Detectron2's (no hook); LazyConfig passes keywords
    def __init__(self, *, feature_hook: Optional[nn.Module] = None, **kwargs):
        super().__init__(**kwargs)
        self._set_feature_hook(feature_hook)

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """Detectron2's ``DenseDetector.forward``; the hook's losses come after the
        detector's, its visuals next to each image's ``"instances"``."""
        images = self.preprocess_image(batched_inputs)
        features, hook_out = self.backbone_features(batched_inputs, images)
        features = [features[f] for f in self.head_in_features]
        predictions = self.head(features)

        if self.training:
            assert not torch.jit.is_scripting(), "Not supported"
            assert "instances" in batched_inputs[0], "Instance annotations are missing in training!"
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            losses = self.forward_training(images, features, predictions, gt_instances)
            losses.update(hook_out.losses)
            return losses
        else:
            results = self.forward_inference(images, features, predictions)
            if torch.jit.is_scripting():
                return results

            processed_results = []
            for results_per_image, input_per_image, image_size in zip(
                results, batched_inputs, images.image_sizes
            ):
                height = input_per_image.get("height", image_size[0])
                width = input_per_image.get("width", image_size[1])
                r = detector_postprocess(results_per_image, height, width)
                processed_results.append({"instances": r})
            return self._with_visuals(processed_results, hook_out)
