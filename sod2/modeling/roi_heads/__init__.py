from .feature_imitation import (ExemplarBank, Feat2Embed, FeatureImitation,  # noqa: F401
                                FeatureImitationROIHeads)  # registers in ROI_HEADS_REGISTRY
