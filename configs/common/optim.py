import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

# params.model is set to the model object by the trainer before instantiation
SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0),
    lr=0.02,
    momentum=0.9,
    weight_decay=1e-4,
)

AdamW = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(base_lr="${..lr}", weight_decay_norm=0.0),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=0.05,
)

# YOLOX (A.8): SGD with Nesterov momentum; weight decay on conv/linear weights only, none on
# normalisation layers' parameters and on any bias (Detectron2's parameter groups do it)
SGD_nesterov_nodecay_norm_bias = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0, weight_decay_bias=0.0),
    lr=0.01,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
)
