from .feature_imitation import (ExemplarBank, Feat2Embed, FeatureImitation,  # noqa: F401
                                FeatureImitationROIHeads, imitation_mlp_lr_factor)
