"""VL-Mamba reference forward on plain torch ops (the project's PyTorch reference, SPEC §8.4).

One readable module, no nn.Module state: weights live in a dict name -> tensor and every function takes
the compute `dtype` (torch.float64 for golden fixtures, torch.float32 to mimic a float32 runtime).
Runs on Debian's python3-torch 1.13 (CPU) and on torch 2.x.

Contents (SPEC sections in brackets):
  safetensors I/O ............ load_safetensors, save_safetensors, load_weights      (§8.4)
  selective scan ............. selective_scan_ref                                     (§4.3)
  Mamba-1 LM ................. MambaLM (forward, step, greedy)                        (§4)
  ViT towers ................. VisionTower (CLIP / SigLIP, HF names)                  (§1.4, §5.3, §5.4)
  SS2D / VSS ................. ss2d_forward (BSM K=2, CSM K=4)                        (§2.3, §2.5)
  connectors ................. connector_forward (mlp, vss_mlp, vss_l2)               (§2.1, §2.5)
  whole model ................ VLMamba (directory per §8.2, forward, greedy)          (§1, §8.1, §8.2)

Command line (for quick looks; the fixture scripts import this module):
  python3 zoo/reference/vlmamba_ref.py -m MODEL_DIR --pixels PIX.safetensors --ids 5,6,7 -n 8 [--float64]
"""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------------
# safetensors I/O (stdlib + torch; the `safetensors` package is not available on Debian)
# ------------------------------------------------------------------------------------------------

# file dtype -> (torch dtype used to read the raw bytes, torch dtype of the result)
_ST_READ = {
    "F64": (torch.float64, torch.float64),
    "F32": (torch.float32, torch.float32),
    "F16": (torch.float16, torch.float16),
    "BF16": (torch.int16, torch.bfloat16),   # read as int16, then reinterpret the bits
    "I64": (torch.int64, torch.int64),
    "I32": (torch.int32, torch.int32),
    "I16": (torch.int16, torch.int16),
    "I8": (torch.int8, torch.int8),
    "U8": (torch.uint8, torch.uint8),
    "BOOL": (torch.bool, torch.bool),
}
_ST_NAME = {v[1]: k for k, v in _ST_READ.items()}


def load_safetensors(path, with_metadata=False):
    """Read a .safetensors file: 8-byte LE header size, JSON header, raw little-endian data."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("[load_safetensors] %s: expected at least 8 bytes, got %d" % (path, len(raw)))
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        if info["dtype"] not in _ST_READ:
            raise ValueError("[load_safetensors] %s: tensor %s has unsupported dtype %s"
                             % (path, name, info["dtype"]))
        read_as, result = _ST_READ[info["dtype"]]
        a, b = info["data_offsets"]
        shape = [int(s) for s in info["shape"]]
        if b == a:
            t = torch.zeros(shape, dtype=result)
        else:
            t = torch.frombuffer(bytearray(raw[base + a:base + b]), dtype=read_as)
            if read_as != result:
                t = t.view(result)
            t = t.reshape(shape).clone()
        out[name] = t
    return (out, metadata) if with_metadata else out


def _raw_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    try:
        return t.numpy().tobytes()
    except Exception:   # no numpy: go through a byte view
        return bytes(t.reshape(-1).view(torch.uint8).tolist())


def save_safetensors(tensors, path, metadata=None):
    """Write tensors (sorted by name) with an optional str->str __metadata__ map; header padded to 8."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        b = _raw_bytes(t)
        header[name] = {"dtype": _ST_NAME[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_weights(model_dir):
    """All tensors of a model directory: model.safetensors or a sharded model.safetensors.index.json."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            out.update(load_safetensors(os.path.join(model_dir, shard)))
        return out
    return load_safetensors(os.path.join(model_dir, "model.safetensors"))


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def strip_prefix(weights, prefix):
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


# ------------------------------------------------------------------------------------------------
# small ops
# ------------------------------------------------------------------------------------------------

def linear(x, w, b=None):
    """x @ w^T + b (torch.nn.Linear semantics)."""
    y = x @ w.t()
    return y if b is None else y + b


def rms_norm(x, w, eps):
    # mamba_ssm/ops/triton/layer_norm.py: rms_norm_ref -- scale by 1/sqrt(mean(x^2) + eps), then weight
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def silu(x):
    return x * torch.sigmoid(x)


def gelu_erf(x):
    # LLaVA mlp2x_gelu / SPEC §8.1: exact erf GELU (torch.nn.GELU default)
    return F.gelu(x)


def activation(name):
    # transformers activations.py: quick_gelu = x*sigmoid(1.702x); gelu_pytorch_tanh = tanh approximation
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return gelu_erf
    if name in ("silu", "swish"):
        return silu
    raise ValueError("[activation] expected quick_gelu, gelu_pytorch_tanh or gelu, got %r" % name)


def softplus(x):
    # torch softplus with threshold 20 (x > 20 passes through), as mamba_ssm uses it
    return F.softplus(x)


def _cast(weights, dtype):
    """Floating tensors to the compute dtype; integer tensors unchanged."""
    return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in weights.items()}


# ------------------------------------------------------------------------------------------------
# selective scan (SPEC §4.3)
# ------------------------------------------------------------------------------------------------

def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Sequential selective scan with mamba_ssm semantics, computed in u's dtype.

    u, delta: (b, d, L); A: (d, N); B, C: (b, N, L) shared by all channels, or (b, G, N, L) where
    group g serves the contiguous channel block g*d/G .. (g+1)*d/G (VMamba passes one group per
    direction); D: (d); z: (b, d, L) gate; delta_bias: (d).
    Returns y (b, d, L) and, if asked, the last state (b, d, N).
    """
    # mirrors mamba_ssm/ops/selective_scan_interface.py: selective_scan_ref, in our own loop
    b, d, L = u.shape
    n = A.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]                         # (b, d, L)
    if delta_softplus:
        delta = softplus(delta)
    if B.dim() == 4:   # grouped: expand each group's B/C to its channel block
        g = B.shape[1]
        B = B.repeat_interleave(d // g, dim=1)                             # (b, d, N, L)
        C = C.repeat_interleave(d // g, dim=1)                             # (b, d, N, L)
    else:
        B = B[:, None].expand(b, d, n, L)                                  # (b, d, N, L)
        C = C[:, None].expand(b, d, n, L)                                  # (b, d, N, L)
    dA = torch.exp(delta[..., None] * A[None, :, None, :])                 # (b, d, L, N)  ZOH for A
    dBu = (delta * u)[..., None] * B.permute(0, 1, 3, 2)                   # (b, d, L, N)  Euler for B
    h = torch.zeros(b, d, n, dtype=u.dtype)                                # (b, d, N)
    ys = []
    for t in range(L):
        h = dA[:, :, t] * h + dBu[:, :, t]                                 # (b, d, N)
        ys.append((h * C[:, :, :, t]).sum(-1))                             # (b, d)
    y = torch.stack(ys, dim=-1) if L > 0 else torch.zeros(b, d, 0, dtype=u.dtype)   # (b, d, L)
    if D is not None:
        y = y + D[None, :, None] * u                                       # skip connection
    if z is not None:
        y = y * silu(z)                                                    # gate inside the scan (Mamba LM)
    return (y, h) if return_last_state else y


# ------------------------------------------------------------------------------------------------
# Mamba-1 LM (SPEC §4)
# ------------------------------------------------------------------------------------------------

class MambaConfig:
    """Sizes of a Mamba-1 LM from an HF MambaConfig or a mamba_ssm config.json (SPEC §4.5)."""

    def __init__(self, cfg):
        if "d_model" in cfg:   # mamba_ssm config_mamba.py names
            ssm = cfg.get("ssm_cfg") or {}
            self.d_model = int(cfg["d_model"])
            self.n_layer = int(cfg["n_layer"])
            self.d_state = int(ssm.get("d_state", 16))
            self.d_conv = int(ssm.get("d_conv", 4))
            self.expand = int(ssm.get("expand", 2))
            dt_rank = ssm.get("dt_rank", "auto")
            self.eps = float(cfg.get("norm_epsilon", 1e-5))
            self.tied = bool(cfg.get("tie_embeddings", True))
            self.d_inner = self.expand * self.d_model
        else:                  # transformers MambaConfig names
            self.d_model = int(cfg["hidden_size"])
            self.n_layer = int(cfg["num_hidden_layers"])
            self.d_state = int(cfg.get("state_size", 16))
            self.d_conv = int(cfg.get("conv_kernel", 4))
            self.expand = int(cfg.get("expand", 2))
            dt_rank = cfg.get("time_step_rank", "auto")
            self.eps = float(cfg.get("layer_norm_epsilon", 1e-5))
            self.tied = bool(cfg.get("tie_word_embeddings", True))
            self.d_inner = int(cfg.get("intermediate_size", self.expand * self.d_model))
        self.dt_rank = math.ceil(self.d_model / 16) if dt_rank == "auto" else int(dt_rank)


def mamba_lm_weights(weights):
    """Accept HF (`backbone.embeddings.`) and mamba_ssm (`backbone.embedding.`) names; untie lm_head."""
    w = {}
    for k, v in weights.items():
        w[k.replace("backbone.embeddings.", "backbone.embedding.")] = v
    if "lm_head.weight" not in w:   # tied head (SPEC §5.2): fall back to the embedding
        w["lm_head.weight"] = w["backbone.embedding.weight"]
    return w


def mamba_mixer_forward(w, p, u, cfg, return_state=False):
    """One Mamba mixer over a whole sequence. u: (L, d_model) -> (L, d_model) [, state]."""
    # mirrors mamba_ssm/modules/mamba_simple.py: Mamba.forward (slow path) and
    # transformers modeling_mamba.py: MambaMixer.slow_forward
    L = u.shape[0]
    k = cfg.d_conv
    xz = linear(u, w[p + "in_proj.weight"], w.get(p + "in_proj.bias"))   # (L, 2*d_inner)
    x, z = xz.chunk(2, dim=-1)                                             # (L, d_inner) each
    x = x.t()                                                              # (d_inner, L)
    # causal depthwise conv1d: pad K-1 on both sides, keep the first L outputs
    xc = F.conv1d(x[None], w[p + "conv1d.weight"], w.get(p + "conv1d.bias"),
                  padding=k - 1, groups=cfg.d_inner)[0, :, :L]               # (d_inner, L)
    xc = silu(xc)
    x_dbl = linear(xc.t(), w[p + "x_proj.weight"])                         # (L, R + 2N)
    dt, Bm, Cm = torch.split(x_dbl, [cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
    delta = linear(dt, w[p + "dt_proj.weight"])                            # (L, d_inner), bias added in scan
    A = -torch.exp(w[p + "A_log"])                                         # (d_inner, N)
    y, h = selective_scan_ref(xc[None], delta.t()[None], A, Bm.t()[None], Cm.t()[None],
                              D=w[p + "D"], z=z.t()[None], delta_bias=w[p + "dt_proj.bias"],
                              delta_softplus=True, return_last_state=True)  # (1, d_inner, L)
    out = linear(y[0].t(), w[p + "out_proj.weight"], w.get(p + "out_proj.bias"))   # (L, d_model)
    if not return_state:
        return out
    # decode state after prefill (SPEC §4.4): last K pre-conv columns, left-padded with zeros
    conv_state = F.pad(x, (max(0, k - L), 0))[:, -k:]                       # (d_inner, K)
    return out, {"conv": conv_state.clone(), "ssm": h[0].clone()}


def mamba_mixer_step(w, p, u, state, cfg):
    """One new token. u: (d_model); state {'conv': (d_inner, K), 'ssm': (d_inner, N)} -> out, state."""
    # mirrors mamba_ssm/modules/mamba_simple.py: Mamba.step
    xz = linear(u, w[p + "in_proj.weight"], w.get(p + "in_proj.bias"))   # (2*d_inner)
    x, z = xz.chunk(2, dim=-1)                                             # (d_inner) each
    conv = torch.cat([state["conv"][:, 1:], x[:, None]], dim=1)            # (d_inner, K) shift left, append
    xc = (conv * w[p + "conv1d.weight"][:, 0, :]).sum(-1)                  # (d_inner)
    if p + "conv1d.bias" in w:
        xc = xc + w[p + "conv1d.bias"]
    xc = silu(xc)
    x_dbl = linear(xc, w[p + "x_proj.weight"])                             # (R + 2N)
    dt, Bm, Cm = torch.split(x_dbl, [cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
    delta = softplus(linear(dt, w[p + "dt_proj.weight"], w[p + "dt_proj.bias"]))   # (d_inner)
    A = -torch.exp(w[p + "A_log"])                                         # (d_inner, N)
    h = state["ssm"] * torch.exp(delta[:, None] * A) + (delta * xc)[:, None] * Bm[None, :]   # (d_inner, N)
    y = (h * Cm[None, :]).sum(-1) + w[p + "D"] * xc                        # (d_inner)
    y = y * silu(z)
    out = linear(y, w[p + "out_proj.weight"], w.get(p + "out_proj.bias"))   # (d_model)
    return out, {"conv": conv, "ssm": h}


class MambaLM:
    """Mamba-1 language model: embedding, n_layer pre-norm blocks, norm_f, lm_head (SPEC §4.1)."""

    def __init__(self, weights, config, dtype=torch.float32):
        self.cfg = config if isinstance(config, MambaConfig) else MambaConfig(config)
        self.dtype = dtype
        self.w = _cast(mamba_lm_weights(weights), dtype)
        self.vocab = self.w["backbone.embedding.weight"].shape[0]

    @classmethod
    def from_dir(cls, model_dir, dtype=torch.float32):
        return cls(load_weights(model_dir), load_config(model_dir), dtype)

    def embed(self, input_ids):
        return self.w["backbone.embedding.weight"][torch.as_tensor(input_ids, dtype=torch.long)]   # (L, d)

    def forward(self, input_ids=None, inputs_embeds=None, return_state=False):
        """Full-sequence forward. Returns {'logits' (L, V), 'layer_out' [(L, d)], 'norm_f_out', 'state'}."""
        # mirrors mamba_ssm/models/mixer_seq_simple.py: MixerModel.forward + MambaLMHeadModel.forward
        w, c = self.w, self.cfg
        hidden = self.embed(input_ids) if inputs_embeds is None else inputs_embeds.to(self.dtype)   # (L, d)
        layer_out, states = [], []
        residual = hidden                                                  # (L, d)
        for i in range(c.n_layer):
            p = "backbone.layers.%d." % i
            h = rms_norm(residual, w[p + "norm.weight"], c.eps)            # (L, d)
            h, st = mamba_mixer_forward(w, p + "mixer.", h, c, return_state=True)
            residual = residual + h                                        # block i output (HF hidden_states)
            layer_out.append(residual)
            states.append(st)
        normed = rms_norm(residual, w["backbone.norm_f.weight"], c.eps)    # (L, d)
        logits = linear(normed, w["lm_head.weight"])                       # (L, V)
        out = {"logits": logits, "layer_out": layer_out, "norm_f_out": normed}
        if return_state:
            out["state"] = states
        return out

    def step(self, token_id, state):
        """Recurrent decode of one token: returns logits (V) and the new per-layer states."""
        w, c = self.w, self.cfg
        residual = self.embed([int(token_id)])[0]                          # (d)
        new_states = []
        for i in range(c.n_layer):
            p = "backbone.layers.%d." % i
            h = rms_norm(residual, w[p + "norm.weight"], c.eps)
            h, st = mamba_mixer_step(w, p + "mixer.", h, state[i], c)
            residual = residual + h
            new_states.append(st)
        normed = rms_norm(residual, w["backbone.norm_f.weight"], c.eps)
        return linear(normed, w["lm_head.weight"]), new_states             # (V)

    def greedy(self, inputs_embeds, n_new, mode="recurrent", stop_at=None):
        """Greedy continuation of a prompt given as embeddings (L, d).

        mode 'recurrent': prefill once, then step (SPEC §4.4); 'full': re-run the whole sequence each
        step. Returns {'ids': [..], 'logits': (n, V) rows that chose each id, 'margins': top-2 gaps}.
        """
        ids, rows = [], []
        embeds = inputs_embeds.to(self.dtype)
        if mode == "recurrent":
            out = self.forward(inputs_embeds=embeds, return_state=True)
            logits, state = out["logits"][-1], out["state"]
        for _ in range(n_new):
            if mode == "full":
                seq = torch.cat([embeds, self.embed(ids)], dim=0) if ids else embeds
                logits = self.forward(inputs_embeds=seq)["logits"][-1]
            nxt = int(torch.argmax(logits))
            ids.append(nxt)
            rows.append(logits)
            if stop_at is not None and nxt == stop_at:
                break
            if mode == "recurrent" and len(ids) < n_new:
                logits, state = self.step(nxt, state)
        rows = torch.stack(rows)                                           # (n, V)
        top2 = torch.topk(rows, 2, dim=-1).values
        return {"ids": ids, "logits": rows, "margins": (top2[:, 0] - top2[:, 1]).tolist()}


# ------------------------------------------------------------------------------------------------
# ViT vision towers: CLIP and SigLIP with HF names (SPEC §1.4, §5.3, §5.4)
# ------------------------------------------------------------------------------------------------

class VisionTower:
    """HF CLIPVisionModel / SiglipVisionModel forward. Accepts `vision_model.`-prefixed (hub) names or
    unprefixed (transformers 5) names, and a config that nests `vision_config` (full CLIPModel)."""

    def __init__(self, weights, config, dtype=torch.float32):
        if "vision_config" in config:
            config = config["vision_config"]
        self.cfg = config
        self.kind = config.get("model_type", "")
        if self.kind not in ("clip_vision_model", "siglip_vision_model"):
            raise ValueError("[VisionTower] expected model_type clip_vision_model or siglip_vision_model, "
                             "got %r" % self.kind)
        self.is_clip = self.kind == "clip_vision_model"
        if any(k.startswith("vision_model.") for k in weights):
            weights = strip_prefix(weights, "vision_model.")
        self.w = _cast(weights, dtype)
        self.dtype = dtype
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.n_layer = int(config["num_hidden_layers"])
        self.patch = int(config["patch_size"])
        self.image_size = int(config["image_size"])
        self.grid = self.image_size // self.patch
        self.eps = float(config.get("layer_norm_eps", 1e-5))
        self.act = activation(config.get("hidden_act", "quick_gelu" if self.is_clip else "gelu_pytorch_tanh"))

    @classmethod
    def from_dir(cls, model_dir, dtype=torch.float32):
        return cls(load_weights(model_dir), load_config(model_dir), dtype)

    def _embed(self, pixel_values):
        # transformers modeling_clip.py: CLIPVisionEmbeddings / modeling_siglip.py: SiglipVisionEmbeddings
        w = self.w
        x = F.conv2d(pixel_values, w["embeddings.patch_embedding.weight"],
                     w.get("embeddings.patch_embedding.bias"), stride=self.patch)   # (B, C, g, g)
        x = x.flatten(2).transpose(1, 2)                                   # (B, g*g, C) row-major patches
        if self.is_clip:
            cls_tok = w["embeddings.class_embedding"].expand(x.shape[0], 1, -1)   # (B, 1, C)
            x = torch.cat([cls_tok, x], dim=1)                             # (B, 1 + g*g, C)
        x = x + w["embeddings.position_embedding.weight"][None]
        if self.is_clip:   # CLIPVisionTransformer: pre_layrnorm before the encoder (hidden_states[0])
            x = layer_norm(x, w["pre_layrnorm.weight"], w["pre_layrnorm.bias"], self.eps)
        return x

    def _attention(self, x, p):
        # transformers: CLIPAttention / SiglipAttention (eager): softmax(q k^T / sqrt(hd)) v, no mask
        w = self.w
        b, t, c = x.shape
        hd = c // self.heads
        q = linear(x, w[p + "q_proj.weight"], w[p + "q_proj.bias"])        # (B, T, C)
        k = linear(x, w[p + "k_proj.weight"], w[p + "k_proj.bias"])
        v = linear(x, w[p + "v_proj.weight"], w[p + "v_proj.bias"])
        q, k, v = [a.reshape(b, t, self.heads, hd).transpose(1, 2) for a in (q, k, v)]   # (B, h, T, hd)
        att = torch.softmax((q @ k.transpose(-1, -2)) * hd ** -0.5, dim=-1)   # (B, h, T, T)
        o = (att @ v).transpose(1, 2).reshape(b, t, c)                     # (B, T, C)
        return linear(o, w[p + "out_proj.weight"], w[p + "out_proj.bias"])

    def forward(self, pixel_values, n_layers=None):
        """pixel_values (B, 3, S, S) or (3, S, S). Returns {'hidden_states': [(B, T, C)] * (n+1),
        'last_hidden_state'} in HF indexing (embedding output first)."""
        # transformers: CLIPEncoder / SiglipEncoder, pre-LN residual blocks
        w = self.w
        x = pixel_values.to(self.dtype)
        if x.dim() == 3:
            x = x[None]
        x = self._embed(x)
        hs = [x]
        n = self.n_layer if n_layers is None else n_layers
        for i in range(n):
            p = "encoder.layers.%d." % i
            x = x + self._attention(layer_norm(x, w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"],
                                               self.eps), p + "self_attn.")
            h = layer_norm(x, w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], self.eps)
            h = linear(self.act(linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                       w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
            x = x + h
            hs.append(x)
        last = x
        if not self.is_clip and n == self.n_layer:   # SigLIP applies post_layernorm to last_hidden_state
            last = layer_norm(x, w["post_layernorm.weight"], w["post_layernorm.bias"], self.eps)
        return {"hidden_states": hs, "last_hidden_state": last}

    def features(self, pixel_values, feature_layer=-2):
        """LLaVA feature selection (SPEC §1.4): hidden_states[feature_layer], CLIP drops CLS.
        Returns (B, g*g, C), tokens row-major over the patch grid."""
        # haotian-liu/LLaVA clip_encoder.py: feature_select with select_layer -2, 'patch'
        idx = feature_layer if feature_layer >= 0 else self.n_layer + 1 + feature_layer
        hs = self.forward(pixel_values, n_layers=idx)["hidden_states"][idx]   # (B, T, C)
        return hs[:, 1:] if self.is_clip else hs


# ------------------------------------------------------------------------------------------------
# SS2D / VSS, design A (SPEC §2.3, §2.5)
# ------------------------------------------------------------------------------------------------

def _scan_orders(x, scan):
    """x: (D_i, H, W) -> K sequences (K, D_i, L) in VMamba's CrossScan order."""
    di, hh, ww = x.shape
    row = x.reshape(di, hh * ww)                                           # p = h*W + w
    if scan == "bsm":
        return torch.stack([row, row.flip(-1)])                            # [row-major, reversed]
    col = x.transpose(1, 2).reshape(di, hh * ww)                           # p = w*H + h
    return torch.stack([row, col, row.flip(-1), col.flip(-1)])             # [hw, wh, flip(hw), flip(wh)]


def _merge_orders(ys, scan, hh, ww):
    """ys: (K, D_i, L) each in its own scan order -> (D_i, L) summed in row-major order."""
    # mirrors VMamba classification/models/vmamba.py: CrossMerge (flip back, transpose back, sum)
    di = ys.shape[1]

    def col_to_row(v):   # column-major positions (w*H + h) back to row-major (h*W + w)
        return v.reshape(di, ww, hh).transpose(1, 2).reshape(di, hh * ww)

    if scan == "bsm":
        return ys[0] + ys[1].flip(-1)
    return ys[0] + ys[2].flip(-1) + col_to_row(ys[1]) + col_to_row(ys[3].flip(-1))


def ss2d_forward(w, x, grid, scan, d_conv=3, norm_eps=1e-5, trace=None):
    """SS2D of VMamba with K = 2 (bsm) or 4 (csm) directions.

    w: the VSS weights without prefix (in_proj.weight, conv2d.*, x_proj_weight, dt_projs_*, A_logs, Ds,
    out_norm.*, out_proj.weight), already in the compute dtype. x: (L, C) tokens row-major over
    grid = (H, W). trace: optional dict that receives scan_out.{k} (L, D_i), merged (L, D_i), output.
    """
    # mirrors VMamba classification/models/vmamba.py: SS2D.forwardv0 / forward_corev0
    hh, ww = grid
    L, c = x.shape
    if L != hh * ww:
        raise ValueError("[ss2d] expected %d = %dx%d tokens, got %d" % (hh * ww, hh, ww, L))
    k_dirs = {"bsm": 2, "csm": 4}[scan]
    xpw = w["x_proj_weight"]                                               # (K, R + 2N, D_i)
    if xpw.shape[0] != k_dirs:
        raise ValueError("[ss2d] scan %s expects K = %d, x_proj_weight has %d" % (scan, k_dirs, xpw.shape[0]))
    di = xpw.shape[2]
    n = w["A_logs"].shape[1]
    r = w["dt_projs_weight"].shape[2]
    if d_conv % 2 != 1:
        raise ValueError("[ss2d] expected an odd d_conv, got %d" % d_conv)

    # 1. shared input projection, split into the scanned branch x and the gate z
    xz = linear(x, w["in_proj.weight"])                                    # (L, 2*D_i)
    xs, z = xz.chunk(2, dim=-1)                                            # (L, D_i) each
    # 2. depthwise 2-D conv over the patch grid ("same" zero padding), then SiLU
    xs = xs.t().reshape(di, hh, ww)                                        # (D_i, H, W)
    xs = F.conv2d(xs[None], w["conv2d.weight"], w.get("conv2d.bias"), padding=d_conv // 2, groups=di)[0]
    xs = silu(xs)                                                          # (D_i, H, W)
    # 3. unfold into K direction sequences (CrossScan)
    seqs = _scan_orders(xs, scan)                                          # (K, D_i, L)
    # 4. per-direction dt/B/C projections, then one grouped selective scan without gate
    x_dbl = torch.einsum("kdl,kcd->kcl", seqs, xpw)                        # (K, R + 2N, L)
    dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=1)                     # (K, R, L), (K, N, L) x2
    dts = torch.einsum("krl,kdr->kdl", dts, w["dt_projs_weight"])          # (K, D_i, L)
    A = -torch.exp(w["A_logs"])                                            # (K*D_i, N), direction-major
    ys = selective_scan_ref(seqs.reshape(1, k_dirs * di, L), dts.reshape(1, k_dirs * di, L), A,
                            Bs[None], Cs[None], D=w["Ds"], z=None,
                            delta_bias=w["dt_projs_bias"].reshape(-1), delta_softplus=True)
    ys = ys.reshape(k_dirs, di, L)                                         # (K, D_i, L) own orders
    # 5. un-permute to row-major and sum (CrossMerge)
    merged = _merge_orders(ys, scan, hh, ww).t()                           # (L, D_i)
    # 6. out_norm, gate with SiLU(z), out_proj
    y = layer_norm(merged, w["out_norm.weight"], w["out_norm.bias"], norm_eps)   # (L, D_i)
    y = y * silu(z)
    out = linear(y, w["out_proj.weight"])                                  # (L, C)
    if trace is not None:
        for k in range(k_dirs):
            trace["scan_out.%d" % k] = ys[k].t()                           # (L, D_i)
        trace["merged"] = merged
        trace["output"] = out
    return out


# ------------------------------------------------------------------------------------------------
# connectors (SPEC §2.1, §2.5)
# ------------------------------------------------------------------------------------------------

CONNECTOR_TYPES = ("mlp", "vss_mlp", "vss_l2")


def connector_forward(weights, cfg, x, grid, trace=None):
    """Connector output (L, d) for vision tokens x (L, C_v) on grid (H, W).

    weights: the mm_projector.* tensors (full names), already in the compute dtype. cfg: the
    connector_config (type, scan, d_conv; d_state/dt_rank/expand are read off the weight shapes).
    trace: optional dict that receives vss.input, vss.scan_out.{k}, vss.merged, vss.output.
    """
    t = cfg["type"]
    w = strip_prefix(weights, "mm_projector.")
    if t == "mlp":
        # LLaVA multimodal_projector/builder.py mlp2x_gelu: Linear, GELU, Linear (indices 0 and 2)
        return linear(gelu_erf(linear(x, w["0.weight"], w["0.bias"])), w["2.weight"], w["2.bias"])
    if t not in CONNECTOR_TYPES:
        raise ValueError("[connector] expected type mlp, vss_mlp or vss_l2, got %r" % t)
    vss = strip_prefix(w, "vss.")
    scan = cfg.get("scan", "bsm")
    d_conv = int(cfg.get("d_conv", 3))
    vt = {} if trace is not None else None
    if t == "vss_mlp":
        # VL-Mamba eq. (b): V_out = MLP(Norm(VSS(V_img) + V_img))
        vss_in = x                                                         # (L, C_v)
        vs = ss2d_forward(vss, vss_in, grid, scan, d_conv, trace=vt)        # (L, C_v)
        h = layer_norm(vs + x, w["norm.weight"], w["norm.bias"], 1e-5)
        out = linear(gelu_erf(linear(h, w["linear1.weight"], w["linear1.bias"])),
                     w["linear2.weight"], w["linear2.bias"])               # (L, d)
    else:
        # VL-Mamba eq. (c): V' = Linear1(V_img); V_out = Linear2(Norm(VSS(GELU(V')) + V'))
        v1 = linear(x, w["linear1.weight"], w["linear1.bias"])             # (L, d)
        vss_in = gelu_erf(v1)
        vs = ss2d_forward(vss, vss_in, grid, scan, d_conv, trace=vt)        # (L, d)
        h = layer_norm(vs + v1, w["norm.weight"], w["norm.bias"], 1e-5)    # residual to pre-GELU V'
        out = linear(h, w["linear2.weight"], w["linear2.bias"])            # (L, d)
    if trace is not None:
        trace["vss.input"] = vss_in
        for k, v in vt.items():
            trace["vss." + k] = v
    return out


# ------------------------------------------------------------------------------------------------
# whole VL-Mamba (SPEC §1, §8.1, §8.2)
# ------------------------------------------------------------------------------------------------

class VLMamba:
    """A VL-Mamba model directory (SPEC §8.2): single-file or assembled from component directories."""

    def __init__(self, model_dir, dtype=torch.float32):
        cfg = load_config(model_dir)
        if cfg.get("model_type") != "vlmamba":
            raise ValueError("[VLMamba] %s: expected model_type vlmamba, got %r" % (model_dir, cfg.get("model_type")))
        self.cfg = cfg
        self.dtype = dtype
        weights = load_weights(model_dir)
        if "vision_tower_path" in cfg:
            vdir = os.path.join(model_dir, cfg["vision_tower_path"])
            self.tower = VisionTower(load_weights(vdir), load_config(vdir), dtype)
        else:
            self.tower = VisionTower(strip_prefix(weights, "vision_tower."), cfg["vision_config"], dtype)
        if "language_model_path" in cfg:
            ldir = os.path.join(model_dir, cfg["language_model_path"])
            self.lm = MambaLM(load_weights(ldir), load_config(ldir), dtype)
        else:
            self.lm = MambaLM(strip_prefix(weights, "language_model."), cfg["text_config"], dtype)
        self.connector_cfg = cfg["connector_config"]
        self.connector_w = _cast({k: v for k, v in weights.items() if k.startswith("mm_projector.")}, dtype)
        self.feature_layer = int(cfg.get("feature_layer", -2))

    def image_prefix(self, pixel_values):
        """pixel_values (N, 3, S, S) or (3, S, S) -> features (N, L_v, C_v), prefix (N*L_v, d)."""
        pv = pixel_values.to(self.dtype)
        if pv.dim() == 3:
            pv = pv[None]
        feats = self.tower.features(pv, self.feature_layer)                # (N, L_v, C_v)
        g = self.tower.grid
        prefix = [connector_forward(self.connector_w, self.connector_cfg, f, (g, g)) for f in feats]
        return feats, torch.cat(prefix, dim=0)                             # images in the given order

    def forward(self, pixel_values, input_ids):
        """Returns features, prefix, and logits for the text positions only (L_text, V)."""
        feats, prefix = self.image_prefix(pixel_values)
        text = self.lm.embed(input_ids)                                    # (L_text, d)
        seq = torch.cat([prefix, text], dim=0)                             # image prefix first (SPEC §1.5)
        out = self.lm.forward(inputs_embeds=seq)
        return {"features": feats, "prefix": prefix, "logits": out["logits"][prefix.shape[0]:]}

    def greedy(self, pixel_values, input_ids, n_new, mode="recurrent", stop_at=None):
        _, prefix = self.image_prefix(pixel_values)
        seq = torch.cat([prefix, self.lm.embed(input_ids)], dim=0)
        return self.lm.greedy(seq, n_new, mode=mode, stop_at=stop_at)


# ------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------

def _main():
    import argparse
    ap = argparse.ArgumentParser(description="VL-Mamba PyTorch reference: logits and greedy ids")
    ap.add_argument("-m", "--model", required=True, help="VL-Mamba model directory (SPEC §8.2)")
    ap.add_argument("--pixels", required=True, help="safetensors file with pixel_values (1,3,S,S)")
    ap.add_argument("--ids", required=True, help="comma-separated text ids after the image prefix")
    ap.add_argument("-n", type=int, default=8, help="greedy tokens to generate")
    ap.add_argument("--float64", action="store_true", help="compute in float64 (default float32)")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    dtype = torch.float64 if a.float64 else torch.float32
    model = VLMamba(a.model, dtype)
    pv = load_safetensors(a.pixels)["pixel_values"]
    ids = [int(s) for s in a.ids.split(",") if s.strip()]
    out = model.forward(pv, ids)
    print("features", tuple(out["features"].shape), "prefix", tuple(out["prefix"].shape),
          "logits", tuple(out["logits"].shape))
    g = model.greedy(pv, ids, a.n, stop_at=0)
    print(json.dumps(g["ids"]))


if __name__ == "__main__":
    _main()
