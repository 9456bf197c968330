"""CFINetRCNN and its one bundle ``model.cfinet`` (sod2/modeling/methods/cfinet/model.py): where
each part lands for the full method and Table 4's partial rows, and one-line errors naming the
key for configs that cannot work."""
import pytest
from detectron2.config import instantiate
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import StandardROIHeads

from sod2.config import get_config
from sod2.errors import UserError
from sod2.modeling.meta_arch import SOD2GeneralizedRCNN
from sod2.modeling.methods.cfinet import CRPN, CFINetRCNN, FeatureImitation, FeatureImitationROIHeads

METHOD = "cfinet/cfinet_R18s_fpn_synthetic.py"


def _keys(model, prefix):
    return [k for k in model.state_dict() if k.startswith(prefix)]


@pytest.mark.parametrize("config,crpn,imitation", [
    (METHOD, True, True),
    ("cfinet/cfinet_crpn_R18s_fpn_synthetic.py", True, False),   # +CRPN
    ("cfinet/cfinet_fi_R18s_fpn_synthetic.py", False, True),     # +FI
])
def test_parts_land_in_the_detectors_slots(config, crpn, imitation):
    model = instantiate(get_config(config).model)
    assert type(model) is CFINetRCNN and isinstance(model, SOD2GeneralizedRCNN)
    assert type(model.proposal_generator) is (CRPN if crpn else RPN)
    assert isinstance(model.roi_heads, FeatureImitationROIHeads)
    assert isinstance(model.roi_heads.imitation, FeatureImitation) == imitation
    assert model.roi_heads.reweight_features is False
    # CFINet's keys since its first version; nothing under "cfinet." (the bundle is no module)
    assert not _keys(model, "cfinet.")
    assert bool(_keys(model, "roi_heads.imitation.")) == imitation
    assert bool(_keys(model, "proposal_generator.head.s2_cls.")) == crpn  # CRPN's stage-2 classifier
    assert bool(_keys(model, "proposal_generator.rpn_head.")) == (not crpn)


def test_reweight_features_reaches_the_roi_heads():
    cfg = get_config(METHOD)
    cfg.model.cfinet.reweight_features = True
    assert instantiate(cfg.model).roi_heads.reweight_features is True


@pytest.mark.parametrize("edit,message", [
    (lambda m: setattr(m.roi_heads, "_target_", StandardROIHeads),
     "model.cfinet needs model.roi_heads._target_ = FeatureImitationROIHeads, got StandardROIHeads"),
    (lambda m: (setattr(m.cfinet, "imitation", None), setattr(m.cfinet, "reweight_features", True)),
     "model.cfinet.reweight_features needs model.cfinet.imitation"),
])
def test_configs_that_cannot_work_are_one_line_errors(edit, message):
    cfg = get_config(METHOD)
    edit(cfg.model)
    with pytest.raises(UserError) as e:
        instantiate(cfg.model)
    assert message in str(e.value) and "\n" not in str(e.value)
