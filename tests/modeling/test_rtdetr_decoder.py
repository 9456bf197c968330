"""RT-DETR decoder: one layer against a hand-written post-norm layer (explicit multi-head
attention with a mask, LayerNorm formula, the fp16 clamp), the refinement recursion and
"look forward twice" against a loop written here, their gradient paths, eval_idx,
denoising queries (prepended, masked), the initialisation and the reference parameter
counts. The query selection is a small stand-in defined here with QuerySelection's
interface, so these tests do not depend on it."""
import math
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sod2.layers.mlp import MLP, inverse_sigmoid
from sod2.modeling.transformer import (OPTIONAL_FIELDS, DecoderLayerOutput, DecoderOutput, EncoderOutput, RTDETRDecoder,
                                      RTDETRDecoderLayer, SelectedQueries)

HIDDEN, CLASSES, HEADS, POINTS, LAYERS, QUERIES = 16, 5, 2, 2, 3, 6
IN_CHANNELS = (8, 12, 16)
MAP_SIZES = [(6, 5), (3, 3), (2, 1)]  # non-square, S = 41


class StubSelection(nn.Module):
    """Top-k query selection in the shape of QuerySelection's output: cell-centre anchors
    (wh 0.1 * 2^level), a Linear + score head + 3-layer box MLP, top-k of the max logit."""

    def __init__(self, hidden=HIDDEN, num_classes=CLASSES, num_queries=QUERIES):
        super().__init__()
        self.num_queries = num_queries
        self.enc_output = nn.Linear(hidden, hidden)
        self.enc_score_head = nn.Linear(hidden, num_classes)
        self.enc_bbox_head = MLP(hidden, hidden, 4, 3)

    def forward(self, memory, spatial_shapes):
        anchors = []
        for lvl, (h, w) in enumerate(spatial_shapes):
            for i in range(h):
                for j in range(w):
                    anchors.append([(j + 0.5) / w, (i + 0.5) / h, 0.1 * 2 ** lvl, 0.1 * 2 ** lvl])
        anchors = torch.tensor(anchors, dtype=memory.dtype)
        out = self.enc_output(memory)
        logits = self.enc_score_head(out)
        delta, box_hidden = self.enc_bbox_head(out, return_hidden=True)
        unact = delta + inverse_sigmoid(anchors)
        index = logits.max(-1).values.topk(self.num_queries, dim=1).indices

        def take(x):
            return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))

        return SelectedQueries(target=take(out).detach(), ref_unact=take(unact), logits=take(logits),
                        boxes=take(unact).sigmoid(), hidden=take(out), box_hidden=take(box_hidden), index=index)


@dataclass
class DN:
    """Stand-in for denoising.DenoisingQueries (the fields the decoder reads)."""
    embed: Tensor
    boxes_unact: Tensor
    attn_mask: Tensor
    num_denoising: int


def build_decoder(seed=0, eval_idx=-1, randomize=True):
    torch.manual_seed(seed)
    dec = RTDETRDecoder(query_selection=StubSelection(), in_channels=IN_CHANNELS, hidden_dim=HIDDEN,
                        num_classes=CLASSES, num_layers=LAYERS, num_heads=HEADS, num_points=POINTS,
                        dim_feedforward=32, eval_idx=eval_idx)
    if randomize:
        # the zero-initialised parts (box deltas, offsets, attention logits) would hide most
        # of the maths: give everything small random values
        with torch.no_grad():
            for name, p in dec.named_parameters():
                if "norm" not in name:
                    p.copy_(torch.randn_like(p) * 0.3)
    return dec


def features(seed=1, batch=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=g) for c, (h, w) in zip(IN_CHANNELS, MAP_SIZES)]


def layer_norm(x, norm):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def manual_layer(layer, tgt, pos, ref, memory, shapes, mask=None, clamp=65504.0):
    """Post-norm layer written out: explicit per-head attention (q = k = tgt + pos, v = tgt,
    blocked pairs at -inf), LayerNorm by its formula, ReLU FFN, clamp before norm3. The
    deformable cross-attention is the module (tested in tests/layers)."""
    B, N, C = tgt.shape
    M = layer.self_attn.num_heads
    d = C // M
    W, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    q = ((tgt + pos) @ W[:C].T + b[:C]).view(B, N, M, d)
    k = ((tgt + pos) @ W[C:2 * C].T + b[C:2 * C]).view(B, N, M, d)
    v = (tgt @ W[2 * C:].T + b[2 * C:]).view(B, N, M, d)
    scores = torch.einsum("bqmd,bkmd->bmqk", q, k) / math.sqrt(d)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    sa = torch.einsum("bmqk,bkmd->bqmd", scores.softmax(-1), v).reshape(B, N, C)
    sa = sa @ layer.self_attn.out_proj.weight.T + layer.self_attn.out_proj.bias
    x = layer_norm(tgt + sa, layer.norm1)
    x = layer_norm(x + layer.cross_attn(x + pos, ref, memory, shapes).output, layer.norm2)
    ffn = F.relu(x @ layer.linear1.weight.T + layer.linear1.bias) @ layer.linear2.weight.T + layer.linear2.bias
    x = x + ffn
    if clamp is not None:
        x = torch.minimum(torch.maximum(x, torch.tensor(-clamp)), torch.tensor(clamp))
    return layer_norm(x, layer.norm3)


def test_layer_matches_hand_written_post_norm_layer():
    torch.manual_seed(0)
    layer = RTDETRDecoderLayer(HIDDEN, HEADS, num_levels=2, num_points=POINTS, dim_feedforward=32)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        # three levels beyond the FFN's small output, one of them beyond the fp16 range: the
        # clamp changes the normalised shape (a two-level vector would normalise to +-1 anyway)
        layer.linear2.bias[:5] = 1e5
        layer.linear2.bias[5:10] = 5e4
    B, N, shapes = 2, 5, [(3, 4), (2, 2)]
    tgt, pos = torch.randn(B, N, HIDDEN), torch.randn(B, N, HIDDEN)
    ref = torch.rand(B, N, 4) * 0.6 + 0.2
    memory = torch.randn(B, 16, HIDDEN)
    mask = torch.zeros(N, N, dtype=torch.bool)
    mask[3:, :2] = True  # queries 3, 4 may not see 0, 1
    mask[0, 4] = True
    out, attn = layer(tgt, pos, ref, memory, shapes, mask)
    torch.testing.assert_close(out, manual_layer(layer, tgt, pos, ref, memory, shapes, mask), rtol=1e-4, atol=1e-4)
    assert attn.offsets.shape == (B, N, HEADS, 2, POINTS, 2) and attn.attention.shape == (B, N, HEADS, 2, POINTS)
    # without the clamp the result is a different one (so the clamp above really acted)
    layer.clamp = None
    out_nc, _ = layer(tgt, pos, ref, memory, shapes, mask)
    torch.testing.assert_close(out_nc, manual_layer(layer, tgt, pos, ref, memory, shapes, mask, clamp=None),
                               rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out_nc, out, atol=1e-3)


def manual_decoder(dec, feats, training, dn=None):
    """The refinement recursion written here, reusing the decoder's modules."""
    memory = torch.cat([proj(f).flatten(2).transpose(1, 2) for proj, f in zip(dec.input_proj, feats)], 1)
    shapes = [tuple(f.shape[2:]) for f in feats]
    sel = dec.query_selection(memory, shapes)
    tgt, unact, mask = sel.target, sel.ref_unact, None
    if dn is not None:
        tgt, unact, mask = torch.cat([dn.embed, tgt], 1), torch.cat([dn.boxes_unact, unact], 1), dn.attn_mask
    ref = unact.detach().sigmoid()
    prev, results = None, []
    for i in range(dec.num_layers):
        pos = dec.query_pos_head.layers[1](F.relu(dec.query_pos_head.layers[0](ref)))
        tgt = manual_layer(dec.layers[i], tgt, pos, ref, memory, shapes, mask)
        delta = dec.dec_bbox_head[i](tgt)
        refined = torch.sigmoid(delta + inverse_sigmoid(ref))
        boxes = torch.sigmoid(delta + inverse_sigmoid(prev)) if (training and i > 0) else refined
        results.append((dec.dec_score_head[i](tgt), boxes, ref))
        prev, ref = refined, refined.detach()
    return results


@pytest.mark.parametrize("training", [True, False])
def test_decoder_matches_hand_written_recursion(training):
    dec = build_decoder()
    dec.train(training)
    dec.input_proj.eval()  # the same BatchNorm statistics in both computations
    feats = features()
    out = dec(feats, None, OPTIONAL_FIELDS)
    expected = manual_decoder(dec, feats, training)
    idx = range(LAYERS) if training else [LAYERS - 1]
    assert [layer.layer_index for layer in out.layers] == list(idx)
    for layer, i in zip(out.layers, idx):
        logits, boxes, ref = expected[i]
        torch.testing.assert_close(layer.logits, logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(layer.boxes, boxes, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.ref_boxes, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.logits, dec.dec_score_head[i](layer.hidden))
        # H_reg: the input of the box MLP's last Linear
        last = dec.dec_bbox_head[i].layers[-1]
        torch.testing.assert_close(layer.box_hidden @ last.weight.T + last.bias,
                                   dec.dec_bbox_head[i](layer.hidden))


def test_shapes_keys_and_encoder_outputs():
    dec = build_decoder().train()
    out = dec(features(), None, OPTIONAL_FIELDS)
    assert isinstance(out, DecoderOutput) and out.num_denoising == 0
    B, N, S = 2, QUERIES, 41
    assert len(out.layers) == LAYERS
    for i, layer in enumerate(out.layers):
        assert layer.layer_index == i and isinstance(layer.layer_index, int)
        assert layer.logits.shape == (B, N, CLASSES)
        for key in ("boxes", "ref_boxes"):
            assert getattr(layer, key).shape == (B, N, 4) and ((getattr(layer, key) > 0) & (getattr(layer, key) < 1)).all()
        assert layer.hidden.shape == layer.box_hidden.shape == (B, N, HIDDEN)
        assert layer.offsets.shape == (B, N, HEADS, 3, POINTS, 2)
        assert layer.attention.shape == (B, N, HEADS, 3, POINTS)
        assert not layer.ref_boxes.requires_grad
    assert isinstance(out.encoder, EncoderOutput) and all(isinstance(x, DecoderLayerOutput) for x in out.layers)
    assert out.encoder.hidden.shape == out.encoder.box_hidden.shape == (B, N, HIDDEN)
    assert out.encoder.logits.shape == (B, N, CLASSES) and out.encoder.boxes.shape == (B, N, 4)
    assert out.encoder.boxes.requires_grad  # the encoder loss trains the selection's box head
    # layer 0 cross-attends from the selected boxes
    torch.testing.assert_close(out.layers[0].ref_boxes, out.encoder.boxes.detach())
    # memory sizes and the flattening order (levels in order, each row-major)
    memory, shapes = dec.flatten_features(features())
    assert shapes == MAP_SIZES and memory.shape == (B, S, HIDDEN)
    proj1 = dec.input_proj[1](features()[1])  # (B, C, 3, 3)
    torch.testing.assert_close(memory[:, 30 + 2 * 3 + 1], proj1[:, :, 2, 1])
    with pytest.raises(ValueError):
        dec(features()[:2])


def test_look_forward_twice_gradient_paths():
    dec = build_decoder().train()
    out = dec(features())

    def grads(loss):
        dec.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        return {n: p.grad for n, p in dec.named_parameters()}

    g = grads(out.layers[1].boxes.sum())
    # layer 1's box is refined from layer 0's box WITH its gradient: layer 0's box head learns
    assert g["dec_bbox_head.0.layers.2.weight"].abs().sum() > 0
    assert g["dec_bbox_head.1.layers.2.weight"].abs().sum() > 0
    assert g["dec_bbox_head.2.layers.2.weight"] is None
    # the reference boxes (selection's box, layer outputs) enter the layers detached
    assert all(g[n] is None for n in g if n.startswith("query_selection.enc_bbox_head"))
    assert g["input_proj.0.weight"].abs().sum() > 0  # through the cross-attention's memory

    g = grads(out.layers[2].boxes.sum())
    assert g["dec_bbox_head.1.layers.2.weight"].abs().sum() > 0
    # only one step back: the box of layer 1 depends on layer 0's box through a detached input
    assert g["dec_bbox_head.0.layers.2.weight"] is None

    g = grads(out.layers[0].boxes.sum())
    assert g["dec_bbox_head.0.layers.2.weight"].abs().sum() > 0
    assert g["dec_bbox_head.1.layers.2.weight"] is None

    g = grads(out.encoder.boxes.sum())
    assert g["query_selection.enc_bbox_head.layers.2.weight"].abs().sum() > 0


def test_eval_idx_emits_one_layer_and_stops():
    feats = features()
    reference = build_decoder().train()
    reference.input_proj.eval()
    train_out = reference(feats, None, OPTIONAL_FIELDS)
    for eval_idx, expected in [(1, 1), (-2, 1), (-1, 2), (0, 0)]:
        dec = build_decoder(eval_idx=eval_idx).eval()
        called = []
        for i, layer in enumerate(dec.layers):
            layer.register_forward_hook(lambda *_, i=i: called.append(i))
        out = dec(feats, None, OPTIONAL_FIELDS)
        assert called == list(range(expected + 1))
        assert len(out.layers) == 1 and out.layers[0].layer_index == expected
        for key in ("logits", "boxes", "hidden", "ref_boxes"):
            torch.testing.assert_close(getattr(out.layers[0], key), getattr(train_out.layers[expected], key))
    with pytest.raises(ValueError):
        build_decoder(eval_idx=LAYERS)


def dn_queries(num_groups=2, per_group=2, batch=2, seed=3):
    """Nd = groups * per_group denoising queries before the Q matching queries; the mask
    written out: matching queries do not see dn queries, dn groups do not see each other."""
    g = torch.Generator().manual_seed(seed)
    nd = num_groups * per_group
    n = nd + QUERIES
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(nd):
            if i >= nd or i // per_group != j // per_group:
                mask[i, j] = True
    embed = torch.randn(batch, nd, HIDDEN, generator=g)
    boxes_unact = inverse_sigmoid(torch.rand(batch, nd, 4, generator=g) * 0.6 + 0.2)
    return DN(embed=embed, boxes_unact=boxes_unact, attn_mask=mask, num_denoising=nd)


def test_denoising_queries_prepended_and_masked():
    dec = build_decoder().train()
    feats = features()
    dn = dn_queries()
    out = dec(feats, dn, frozenset({"ref_boxes", "hidden"}))
    assert out.num_denoising == 4
    for layer in out.layers:
        assert layer.logits.shape == (2, 4 + QUERIES, CLASSES)
    torch.testing.assert_close(out.layers[0].ref_boxes[:, :4], dn.boxes_unact.sigmoid())
    torch.testing.assert_close(out.layers[0].ref_boxes[:, 4:], out.encoder.boxes.detach())
    # the full computation with the mask, written out
    for (logits, boxes, _), layer in zip(manual_decoder(dec, feats, True, dn), out.layers):
        torch.testing.assert_close(layer.logits, logits, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(layer.boxes, boxes, rtol=1e-4, atol=1e-5)

    # change group 0 (queries 0, 1): the matching queries and group 1 must not notice
    changed = DN(dn.embed.clone(), dn.boxes_unact.clone(), dn.attn_mask, dn.num_denoising)
    changed.embed[:, :2] += 1.0
    changed.boxes_unact[:, :2] -= 0.5
    out2 = dec(feats, changed, frozenset({"hidden"}))
    for a, b in zip(out.layers, out2.layers):
        for key in ("logits", "boxes", "hidden"):
            torch.testing.assert_close(getattr(a, key)[:, 2:], getattr(b, key)[:, 2:])
            assert not torch.allclose(getattr(a, key)[:, :2], getattr(b, key)[:, :2])
    # with the matching queries alone the matching outputs are the same as well
    alone = dec(feats)
    for a, b in zip(out.layers, alone.layers):
        torch.testing.assert_close(a.logits[:, 4:], b.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a.boxes[:, 4:], b.boxes, rtol=1e-5, atol=1e-6)
    # control: without the mask the change does reach the matching queries
    open_mask = DN(dn.embed, dn.boxes_unact, torch.zeros_like(dn.attn_mask), 4)
    open_changed = DN(changed.embed, changed.boxes_unact, torch.zeros_like(dn.attn_mask), 4)
    assert not torch.allclose(dec(feats, open_mask).layers[-1].logits[:, 4:],
                              dec(feats, open_changed).layers[-1].logits[:, 4:])
    with pytest.raises(ValueError):
        dec(feats, DN(dn.embed, dn.boxes_unact, dn.attn_mask[1:, 1:], 4))


def test_initialisation():
    dec = build_decoder(randomize=False).train()
    for head in dec.dec_score_head:
        torch.testing.assert_close(head.bias, torch.full((CLASSES,), -4.59512), atol=1e-5, rtol=0)
    for head in dec.dec_bbox_head:
        assert head.layers[-1].weight.abs().max() == 0 and head.layers[-1].bias.abs().max() == 0
    # xavier-uniform on both query_pos_head Linears (bound sqrt(6 / (fan_in + fan_out)));
    # PyTorch's default bound 1 / sqrt(fan_in) is smaller for the second one
    w0, w1 = dec.query_pos_head.layers[0].weight, dec.query_pos_head.layers[1].weight
    assert w0.abs().max() <= math.sqrt(6 / (4 + 2 * HIDDEN))
    assert 1 / math.sqrt(2 * HIDDEN) < w1.abs().max() <= math.sqrt(6 / (2 * HIDDEN + HIDDEN))
    # zero box deltas at init: every layer keeps the selected box
    out = dec(features())
    for layer in out.layers:
        torch.testing.assert_close(layer.boxes, out.encoder.boxes.detach(), atol=1e-5, rtol=1e-4)


# trainable parameters of the reference RTDETRTransformer without its query selection
# (enc_output, enc_score_head, enc_bbox_head) and denoising embedding, summed from the key
# shapes of rtdetr_pytorch's 6x COCO models (80 classes)
REFERENCE_DECODER_PARAMS = [((256, 256, 256), 6, 7226296),  # R34, R50, R50-m (6 layers, eval_idx 2)
                            ((256, 256, 256), 3, 3779164),  # R18 (3 layers)
                            ((384, 384, 384), 6, 7324600)]  # R101 (hidden 384 in the encoder)


@pytest.mark.parametrize("in_channels,num_layers,count", REFERENCE_DECODER_PARAMS)
def test_reference_parameter_counts(in_channels, num_layers, count):
    dec = RTDETRDecoder(query_selection=nn.Module(), in_channels=in_channels, num_layers=num_layers)
    assert sum(p.numel() for p in dec.parameters() if p.requires_grad) == count


def test_reference_layer_parameter_names_and_shapes():
    layer = RTDETRDecoderLayer(256, 8, 3, 4, 1024)
    # rtdetr_pytorch decoder.decoder.layers.0.* (renaming nothing)
    expected = {
        "self_attn.in_proj_weight": (768, 256), "self_attn.in_proj_bias": (768,),
        "self_attn.out_proj.weight": (256, 256), "self_attn.out_proj.bias": (256,),
        "norm1.weight": (256,), "norm1.bias": (256,),
        "cross_attn.sampling_offsets.weight": (192, 256), "cross_attn.sampling_offsets.bias": (192,),
        "cross_attn.attention_weights.weight": (96, 256), "cross_attn.attention_weights.bias": (96,),
        "cross_attn.value_proj.weight": (256, 256), "cross_attn.value_proj.bias": (256,),
        "cross_attn.output_proj.weight": (256, 256), "cross_attn.output_proj.bias": (256,),
        "norm2.weight": (256,), "norm2.bias": (256,),
        "linear1.weight": (1024, 256), "linear1.bias": (1024,),
        "linear2.weight": (256, 1024), "linear2.bias": (256,),
        "norm3.weight": (256,), "norm3.bias": (256,),
    }
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == expected


def test_unknown_output_field_is_refused():
    with pytest.raises(ValueError, match="unknown output fields"):
        build_decoder()(features(), None, frozenset({"sampling_points"}))
