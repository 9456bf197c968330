"""
Foreground Probing ("Unmasking the Tiny: Foreground Probing for Small Object Detection"): a
sparse token selection and a foreground refinement on a dense detector's objectness, here on
sod2's YOLOX; training adds one loss, inference refines K objectness logits. Numbers, sources
and the measured runs: projects/ForegroundProbing/README.md.

How it enters its baseline: by subclass. :class:`FGProbeYOLOX` (``model.py``) is
:class:`~sod2.modeling.meta_arch.YOLOX` with one injected module, ``probe``
(:class:`ForegroundProbe`, ``probe.py``), and two of YOLOX's typed hooks filled: ``extra_losses``
(L_ref) and ``inference_objectness`` (the refined objectness). Both hooks receive YOLOX's
:class:`~sod2.modeling.meta_arch.yolox.YOLOXStep` (the decoded predictions, the head's last
branch features, the input sizes, the assignments); YOLOX itself holds no probe code.

=============================  ===========================================  ==========================================
paper part                     class / method (module)                      config key
=============================  ===========================================  ==========================================
the whole method               :class:`FGProbeYOLOX` (``model``)            ``model._target_``, ``model.probe``
STSM, top-K objectness tokens  :meth:`ForegroundProbe.select` (``probe``),  ``model.probe.num_tokens`` (K = 500,
(never in the batch padding)   :meth:`FGProbeYOLOX.valid_locations`         Table 3)
token features (with grads)    :meth:`ForegroundProbe.gather_levels`        the head's width: ``cls_dim``, ``reg_dim``
FRM, foreground refinement     :meth:`ForegroundProbe.refine`               ``model.probe.key_dim``, ``value_dim``
the gate lambda (Table 4)      :meth:`ForegroundProbe.lam`                  ``model.probe.gate`` ("learnable" | 0.3..)
L_ref (``loss_ref``)           :meth:`ForegroundProbe.losses`,              ``model.probe.loss_weight``, ``target``,
                               :meth:`FGProbeYOLOX.probe_targets`           ``iou_thresh``
inference                      :meth:`ForegroundProbe.apply`                ``model.probe.inference``
the gate's value               :meth:`FGProbeYOLOX.extra_losses`            EventStorage ``fgprobe/lambda``
the paper's detector           YOLOX-X, 4-scale head (``use_p2``), CIoU     the plain twins ``fgprobe_plain_*``
=============================  ===========================================  ==========================================

Config keys are those of ``configs/common/models/fgprobe.py``'s ``probe`` node, set by the method
configs in ``configs/fgprobe/``.

Off: ``model.probe=null`` gives YOLOX (no extra parameter, the same state-dict keys, losses and
detections as the plain twin; tests/methods/test_off_is_baseline_fgprobe.py). A method config
is its plain twin plus ``model._target_ = FGProbeYOLOX`` and ``model.probe = probe``.

State-dict keys: ``probe.{q_cls,k_cls,q_reg,k_reg,v_reg,gate,pred}.{weight,bias}`` (14; 12 with a
fixed gate). Checkpoints of the old layout (``head.probe.*``, before issue 16) load through sod2's
checkpoint loaders, or convert with ``python tools/convert_weights.py sod2-layout OLD.pth NEW.pth``.
Export: the ONNX graph calls the model's ``inference_objectness``, so STSM + FRM are in it.
"""
from .probe import ForegroundProbe  # noqa: F401
from .model import FGProbeYOLOX  # noqa: F401  (registers FGProbeYOLOX in META_ARCH_REGISTRY)
