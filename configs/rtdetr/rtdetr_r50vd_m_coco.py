"""RT-DETR-R50vd-m on COCO 2017: ``rtdetr_r50vd_coco.py`` with the encoder's CSP expansion 0.5
and only the first 3 of the 6 trained decoder layers run at inference (``eval_idx`` 2), as
the reference's ``rtdetr_r50vd_m_6x_coco.yml``. Same backbone weights as R50."""
from ..common.models.rtdetr import rtdetr_depth, rtdetr_norm
from .rtdetr_r50vd_coco import dataloader, lr_multiplier, model, optimizer, train

rtdetr_depth(model, "r50_m")
rtdetr_norm(model, "SyncBN")
