"""Train a small VL-Mamba on the procedural shapes dataset and export a VL-Mamba directory (issue 6).

Model (SPEC §1, §2, §8.2): a SigLIP-style ViT trained from scratch, a VSS-L2 + BSM connector (SS2D,
design A) and a small Mamba-1 LM, plus a GPT-NeoX-style byte-level BPE tokenizer trained on the dataset
text with HF `tokenizers`. One stage: nothing is pretrained, so all parts train together from the start
(the paper's two stages assume a pretrained tower and LM). The loss covers the answer tokens and the
closing <|endoftext|> only; visual and question positions are masked.

The modules below are written to match vlmamba_ref.py op for op, batched, so that the exported weights mean
the same thing to the reference and to the C++ runtime. The selective scans run as a batched sequential
loop in float32 (`scan_batched`); `--check` compares it with `selective_scan_ref`, values and gradients, and
the whole model with the reference's VLMamba on an exported copy.

Exported config: feature_layer -1 (the tower is trained for this model, so its last layer is used rather
than stored unused), prompt_template "plain" (the prompt is the question itself; the answer follows it
directly, without a leading space, and ends with <|endoftext|>), weights stored as BF16.

Test accuracy is computed with the reference (vlmamba_ref.VLMamba) in float32, greedy, on the exported
directory, so it measures exactly the weights that ship.

  python3 zoo/reference/train.py --out OUTDIR [--minutes 4.5] [--device cuda] [--check]
  python3 zoo/reference/train.py --out OUTDIR --init zoo/shapes-vlmamba --lr 5e-4 --minutes 10   # continue
  python3 zoo/reference/train.py --eval-only -m MODEL_DIR --questions Q.jsonl --gt GT.jsonl --images DIR

Issue 16 added: --task mixed (dataset.py's spatial question types besides the old ones); the fused Triton scan
(fused_scan.py) on CUDA, --scan-impl auto|loop|triton; --prepare-data FILE / --data FILE (build the data once,
train several runs on it); --sync-dir (a barrier and one shared step count for concurrent runs, driven by
ablation_parallel.py); --deadline, --eval-every, --tf-test, --no-eval, and --procs for --eval-only.
"""

import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as ds            # noqa: E402
import vlmamba_ref as ref       # noqa: E402

SPECIALS = ["<|endoftext|>", "<|padding|>"]
EOS, PAD = 0, 1
TASK = {"name": "classic"}   # dataset task set (dataset.TASKS); --task sets it


def task_types():
    return ds.TASKS[TASK["name"]][0]


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# tokenizer: trained with HF `tokenizers` (GPT-NeoX settings, as zoo/fixtures/make_tokenizer.py);
# encoded here with a small byte-level BPE of our own so that CPU-only machines can use tokenizer.json
# ------------------------------------------------------------------------------------------------

def train_tokenizer(texts, path, vocab_size=512):
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    try:
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)
    except TypeError:
        tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(SPECIALS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in range(24, 1, -1)])
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, "tokenizer: %s has id %s" % (s, tok.token_to_id(s))
    tok.save(path, pretty=True)
    return tok


def _bytes_to_unicode():
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ByteBPE:
    """Encoder/decoder for a byte-level BPE tokenizer.json, for the ASCII text of this dataset (no added
    tokens inside the text). Checked against HF `tokenizers` on every dataset string when it is present."""

    def __init__(self, path):
        import re
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        self.vocab = j["model"]["vocab"]
        merges = j["model"]["merges"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.inv = {v: k for k, v in self.vocab.items()}
        self.added = {a["id"]: a["content"] for a in j.get("added_tokens", [])}
        self.size = max(max(self.inv), max(self.added, default=0)) + 1
        self.b2u = _bytes_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}
        # GPT-2 split pattern restricted to ASCII letters/digits (the dataset is ASCII)
        self.pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
        self.cache = {}

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            best = min(((self.ranks.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)))
            if best[0] == 1 << 30:
                break
            i = best[1]
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
        return parts

    def encode(self, text):
        if text in self.cache:
            return self.cache[text]
        assert text.isascii() and "  " not in text, "ByteBPE handles this dataset's text only: %r" % text
        ids = []
        for piece in self.pat.findall(text):
            word = "".join(self.b2u[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[p] for p in self._bpe(word))
        self.cache[text] = ids
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if i in (EOS, PAD):
                continue
            if i in self.added:
                out.extend(self.added[i].encode("utf-8"))
            elif i in self.inv:
                out.extend(self.u2b[c] for c in self.inv[i])
            else:
                out.extend("\ufffd".encode("utf-8"))
        return out.decode("utf-8", errors="replace")


class HFEncoder:
    def __init__(self, hf):
        self.hf, self.size = hf, hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        return list(self.hf.encode(text).ids)

    def decode(self, ids):
        return self.hf.decode([i for i in ids if i not in (EOS, PAD)])


def make_tokenizer(out_dir):
    """tokenizer.json in out_dir: HF-trained when `tokenizers` exists, else (CPU debugging only) a copy of
    the test fixture tokenizer. Returns (ByteBPE, source)."""
    path = os.path.join(out_dir, "tokenizer.json")
    texts = ds.TASKS[TASK["name"]][3]()
    try:
        hf = train_tokenizer(texts, path)
        src = "hf"
    except ImportError:
        import shutil
        here = os.path.dirname(os.path.abspath(__file__))
        shutil.copy(os.path.join(here, "..", "..", "tests", "data", "tokenizer", "tokenizer.json"), path)
        hf, src = None, "fixture (no `tokenizers` here; debugging only)"
    enc = ByteBPE(path)
    if hf is not None:
        bad = [t for t in texts if hf.encode(t).ids != enc.encode(t)]
        bad += [t for t in texts if hf.decode(enc.encode(t)) != t]
        if bad:   # keep going with HF's own encoder (the C++ runtime follows HF)
            log("WARNING: ByteBPE disagrees with tokenizers on %d strings, e.g. %r; using HF" % (len(bad), bad[:3]))
            return HFEncoder(hf), src + " (HF encoder)"
        log("tokenizer: HF BPE, vocab %d; ByteBPE agrees on all %d dataset strings" % (hf.get_vocab_size(), len(texts)))
    return enc, src


# ------------------------------------------------------------------------------------------------
# batched sequential selective scan (float32), checked against vlmamba_ref.selective_scan_ref
# ------------------------------------------------------------------------------------------------

class _LinearRecurrence(torch.autograd.Function):
    """h_t = a_t * h_{t-1} + b_t over dim 0 (h_{-1} = 0): one fused kernel per step forward and backward,
    no per-step autograd nodes. a, b: (L, ...) -> h (L, ...)."""

    @staticmethod
    def forward(ctx, a, b):
        h = torch.empty_like(b)
        h[0] = b[0]
        for t in range(1, b.shape[0]):
            torch.addcmul(b[t], a[t], h[t - 1], out=h[t])
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, gh):
        a, h = ctx.saved_tensors
        gh = gh.contiguous()
        g = torch.empty_like(gh)                                           # dLoss/dh_t, all paths
        g[-1] = gh[-1]
        for t in range(gh.shape[0] - 2, -1, -1):
            torch.addcmul(gh[t], a[t + 1], g[t + 1], out=g[t])
        ga = torch.zeros_like(a)
        ga[1:] = g[1:] * h[:-1]
        return ga, g


def scan_batched(u, delta, A, Bm, Cm, D, dtype=torch.float32):
    """u, delta: (b, G, dg, L) with delta already softplus'ed; A: (G, dg, N); Bm, Cm: (b, G, N, L), group g
    serving its dg channels; D: (G, dg). Returns y (b, G, dg, L) = scan + D*u (no gate), in `dtype`."""
    # mirrors vlmamba_ref.selective_scan_ref (ZOH for A, Euler for B), time-major for contiguous steps
    u, delta, A, Bm, Cm, D = [t.to(dtype) for t in (u, delta, A, Bm, Cm, D)]
    with torch.autocast(device_type=u.device.type, enabled=False):       # the scan stays in `dtype`
        dt = delta.permute(3, 0, 1, 2)                                     # (L, b, G, dg)
        dA = torch.exp(dt[..., None] * A)                                  # (L, b, G, dg, N)
        dBu = (dt * u.permute(3, 0, 1, 2))[..., None] * Bm.permute(3, 0, 1, 2)[:, :, :, None, :]   # (L, b, G, dg, N)
        hs = _LinearRecurrence.apply(dA.contiguous(), dBu.contiguous())   # (L, b, G, dg, N)
        y = torch.einsum("lbgdn,lbgn->bgdl", hs, Cm.permute(3, 0, 1, 2))  # (b, G, dg, L)
        return y + D[None, :, :, None] * u


SCAN_IMPL = {"name": "auto"}   # auto: the fused Triton scan on CUDA when Triton is there, else scan_batched


def scan(u, delta, A, Bm, Cm, D):
    """scan_batched, or fused_scan.scan_fused (same contract) on CUDA: --scan-impl auto|loop|triton."""
    if SCAN_IMPL["name"] != "loop" and u.is_cuda:
        import fused_scan
        if fused_scan.available(u.device):
            return fused_scan.scan_fused(u, delta, A, Bm, Cm, D)
        if SCAN_IMPL["name"] == "triton":
            raise RuntimeError("--scan-impl triton: Triton is not available")
    return scan_batched(u, delta, A, Bm, Cm, D)


# ------------------------------------------------------------------------------------------------
# modules (names = the exported tensor names; SPEC §5.2, §5.4, §2.5)
# ------------------------------------------------------------------------------------------------

class SiglipLayer(nn.Module):
    def __init__(self, c, inter, heads, eps):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.layer_norm1 = nn.LayerNorm(c, eps=eps)
        self.self_attn = nn.Module()
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, n, nn.Linear(c, c))
        self.layer_norm2 = nn.LayerNorm(c, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(c, inter)
        self.mlp.fc2 = nn.Linear(inter, c)

    def forward(self, x):                                                  # (B, T, C)
        b, t, c = x.shape
        a = self.self_attn
        h = self.layer_norm1(x)
        q, k, v = [p(h).reshape(b, t, self.heads, -1).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj)]
        o = F.scaled_dot_product_attention(q, k, v) if hasattr(F, "scaled_dot_product_attention") else \
            torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v   # (B, h, T, hd)
        x = x + a.out_proj(o.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.layer_norm2(x)), approximate="tanh"))


class SiglipVision(nn.Module):
    """HF SiglipVisionModel's `vision_model` without the pooling head; returns hidden_states[-1] (no final norm)."""

    def __init__(self, vc):
        super().__init__()
        c, p, s = vc["hidden_size"], vc["patch_size"], vc["image_size"]
        self.embeddings = nn.Module()
        self.embeddings.patch_embedding = nn.Conv2d(3, c, p, stride=p)
        self.embeddings.position_embedding = nn.Embedding((s // p) ** 2, c)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.02)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList(SiglipLayer(c, vc["intermediate_size"], vc["num_attention_heads"],
                                                        vc["layer_norm_eps"]) for _ in range(vc["num_hidden_layers"]))
        self.post_layernorm = nn.LayerNorm(c, eps=vc["layer_norm_eps"])   # exported; unused by features(-1)

    def forward(self, pix):                                                # (B, 3, S, S)
        x = self.embeddings.patch_embedding(pix).flatten(2).transpose(1, 2)   # (B, g*g, C) row-major
        x = x + self.embeddings.position_embedding.weight[None]
        for layer in self.encoder.layers:
            x = layer(x)
        return x


def _dt_bias(n, rng_gen):
    dt = torch.exp(torch.rand(n, generator=rng_gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))                               # softplus^-1


class SS2D(nn.Module):
    """VMamba SS2D, design A (SPEC §2.3), K = 2 (bsm) or 4 (csm); mirrors vlmamba_ref.ss2d_forward."""

    def __init__(self, c, d_state, expand, d_conv, scan, g):
        super().__init__()
        di, r, k = expand * c, math.ceil(c / 16), {"bsm": 2, "csm": 4}[scan]
        self.scan, self.di, self.r, self.n, self.k = scan, di, r, d_state, k
        self.in_proj = nn.Linear(c, 2 * di, bias=False)
        self.conv2d = nn.Conv2d(di, di, d_conv, padding=d_conv // 2, groups=di)
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * d_state, di).uniform_(-di ** -0.5, di ** -0.5, generator=g))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, di, r).uniform_(-r ** -0.5, r ** -0.5, generator=g))
        self.dt_projs_bias = nn.Parameter(_dt_bias(k * di, g).reshape(k, di))
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(k * di, 1))
        self.Ds = nn.Parameter(torch.ones(k * di))
        self.out_norm = nn.LayerNorm(di, eps=1e-5)
        self.out_proj = nn.Linear(di, c, bias=False)

    def forward(self, x, hh, ww):                                          # (B, L, C) row-major
        b, L, _ = x.shape
        xs, z = self.in_proj(x).chunk(2, dim=-1)                           # (B, L, D_i) each
        xs = F.silu(self.conv2d(xs.transpose(1, 2).reshape(b, self.di, hh, ww)))   # (B, D_i, H, W)
        row = xs.reshape(b, self.di, L)
        if self.scan == "bsm":
            seqs = torch.stack([row, row.flip(-1)], 1)                     # (B, K, D_i, L)
        else:
            col = xs.transpose(2, 3).reshape(b, self.di, L)
            seqs = torch.stack([row, col, row.flip(-1), col.flip(-1)], 1)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", seqs, self.x_proj_weight)   # (B, K, R + 2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [self.r, self.n, self.n], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)    # (B, K, D_i, L)
        delta = F.softplus(dts.float() + self.dt_projs_bias.float()[None, :, :, None])
        A = -torch.exp(self.A_logs.float()).reshape(self.k, self.di, self.n)
        ys = scan(seqs, delta, A, Bs, Cs, self.Ds.reshape(self.k, self.di))          # (B, K, D_i, L)
        if self.scan == "bsm":
            y = ys[:, 0] + ys[:, 1].flip(-1)                               # (B, D_i, L)
        else:
            def c2r(v):
                return v.reshape(b, self.di, ww, hh).transpose(2, 3).reshape(b, self.di, L)
            y = ys[:, 0] + ys[:, 2].flip(-1) + c2r(ys[:, 1]) + c2r(ys[:, 3].flip(-1))
        y = self.out_norm(y.transpose(1, 2)) * F.silu(z)                  # (B, L, D_i)
        return self.out_proj(y)


class ConnectorVSSL2(nn.Module):
    """VSS-L2 (SPEC §2.1 c): Linear2(Norm(VSS(GELU(Linear1 x)) + Linear1 x))."""

    def __init__(self, cv, d, cc, g):
        super().__init__()
        self.linear1 = nn.Linear(cv, d)
        self.vss = SS2D(d, cc["d_state"], cc["expand"], cc["d_conv"], cc["scan"], g)
        self.norm = nn.LayerNorm(d, eps=1e-5)
        self.linear2 = nn.Linear(d, d)

    def forward(self, x, hh, ww):                                          # (B, L, C_v)
        v1 = self.linear1(x)                                               # (B, L, d)
        return self.linear2(self.norm((self.vss(F.gelu(v1), hh, ww) + v1).float()))


class ConnectorMLP(nn.Sequential):
    """MLP (SPEC §2.1 a, LLaVA mlp2x_gelu): Linear(C_v -> d), GELU (erf), Linear(d -> d); names 0 and 2."""

    def __init__(self, cv, d):
        super().__init__(nn.Linear(cv, d), nn.GELU(), nn.Linear(d, d))

    def forward(self, x, hh, ww):                                          # (B, L, C_v)
        return self[2](F.gelu(self[0](x)))                                 # (B, L, d)


class ConnectorVSSMLP(nn.Module):
    """VSS-MLP (SPEC §2.1 b): MLP(Norm(VSS(x) + x)), the VSS at vision width C_v."""

    def __init__(self, cv, d, cc, g):
        super().__init__()
        self.vss = SS2D(cv, cc["d_state"], cc["expand"], cc["d_conv"], cc["scan"], g)
        self.norm = nn.LayerNorm(cv, eps=1e-5)
        self.linear1 = nn.Linear(cv, d)
        self.linear2 = nn.Linear(d, d)

    def forward(self, x, hh, ww):                                          # (B, L, C_v)
        h = self.norm((self.vss(x, hh, ww) + x).float())                   # (B, L, C_v)
        return self.linear2(F.gelu(self.linear1(h)))                       # (B, L, d)


def make_connector(cv, d, cc, g):
    if cc["type"] == "mlp":
        return ConnectorMLP(cv, d)
    if cc["type"] == "vss_mlp":
        return ConnectorVSSMLP(cv, d, cc, g)
    if cc["type"] == "vss_l2":
        return ConnectorVSSL2(cv, d, cc, g)
    raise ValueError("[connector] expected type mlp, vss_mlp or vss_l2, got %r" % cc["type"])


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float())


class MambaMixer(nn.Module):
    """Mamba-1 mixer (HF MambaMixer names); mirrors vlmamba_ref.mamba_mixer_forward."""

    def __init__(self, d, di, n, r, k, n_layer, g):
        super().__init__()
        self.di, self.n, self.r, self.k = di, n, r, k
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, k, groups=di, padding=k - 1)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di)
        nn.init.uniform_(self.dt_proj.weight, -r ** -0.5, r ** -0.5)
        with torch.no_grad():
            self.dt_proj.bias.copy_(_dt_bias(di, g))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=False)
        with torch.no_grad():   # mamba_ssm: rescale the out_proj of each residual branch by 1/sqrt(n_layer)
            self.out_proj.weight /= math.sqrt(n_layer)

    def forward(self, u):                                                  # (B, L, d)
        b, L, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)                            # (B, L, D_i)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L])                # (B, D_i, L) causal
        dt, Bm, Cm = torch.split(self.x_proj(x.transpose(1, 2)), [self.r, self.n, self.n], dim=-1)
        delta = F.softplus((dt @ self.dt_proj.weight.t()).float() + self.dt_proj.bias.float())   # (B, L, D_i)
        A = -torch.exp(self.A_log.float())                                 # (D_i, N)
        y = scan(x[:, None], delta.transpose(1, 2)[:, None], A[None], Bm.transpose(1, 2)[:, None],
                         Cm.transpose(1, 2)[:, None], self.D[None])[:, 0]  # (B, D_i, L)
        y = y * F.silu(z.transpose(1, 2).float())                         # gate inside the scan (Mamba LM)
        return self.out_proj(y.transpose(1, 2))                            # (B, L, d)


class MambaBlock(nn.Module):
    def __init__(self, d, mixer, eps):
        super().__init__()
        self.norm = RMSNorm(d, eps)
        self.mixer = mixer


class MambaLMModule(nn.Module):
    def __init__(self, tc, g):
        super().__init__()
        d, n_layer = tc["hidden_size"], tc["num_hidden_layers"]
        self.backbone = nn.Module()
        self.backbone.embeddings = nn.Embedding(tc["vocab_size"], d)
        nn.init.normal_(self.backbone.embeddings.weight, std=0.02)
        self.backbone.layers = nn.ModuleList(
            MambaBlock(d, MambaMixer(d, tc["intermediate_size"], tc["state_size"], tc["time_step_rank"],
                                     tc["conv_kernel"], n_layer, g), tc["layer_norm_epsilon"])
            for _ in range(n_layer))
        self.backbone.norm_f = RMSNorm(d, tc["layer_norm_epsilon"])
        self.lm_head = nn.Linear(d, tc["vocab_size"], bias=False)
        nn.init.normal_(self.lm_head.weight, std=0.02)

    def forward(self, emb):                                                # (B, L, d)
        residual = emb.float()                                             # residual stream in fp32
        for blk in self.backbone.layers:
            residual = residual + blk.mixer(blk.norm(residual)).float()
        return self.lm_head(self.backbone.norm_f(residual))                # (B, L, V)


class ShapesVLMamba(nn.Module):
    def __init__(self, cfg, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        vc, tc, cc = cfg["vision_config"], cfg["text_config"], cfg["connector_config"]
        self.grid = vc["image_size"] // vc["patch_size"]
        self.vision_tower = nn.Module()
        self.vision_tower.vision_model = SiglipVision(vc)
        self.mm_projector = make_connector(vc["hidden_size"], tc["hidden_size"], cc, g)
        self.language_model = MambaLMModule(tc, g)

    def prefix(self, pix):                                                 # (B, 3, S, S) normalised
        feats = self.vision_tower.vision_model(pix)                        # (B, L_v, C_v)
        return self.mm_projector(feats, self.grid, self.grid)              # (B, L_v, d)

    def forward(self, pix, ids):                                           # ids (B, T)
        pre = self.prefix(pix)
        emb = self.language_model.backbone.embeddings(ids)                 # (B, T, d)
        seq = torch.cat([pre, emb.to(pre.dtype)], dim=1)                   # image prefix first (SPEC §1.5)
        return self.language_model(seq)[:, pre.shape[1]:]                  # (B, T, V) text positions


# ------------------------------------------------------------------------------------------------
# config and export
# ------------------------------------------------------------------------------------------------

def make_config(vocab, width=192, vlayers=6, d=256, layers=4, image=64, patch=8, connector="vss_l2", scan="bsm"):
    vc = {"model_type": "siglip_vision_model", "architectures": ["SiglipVisionModel"], "hidden_size": width,
          "intermediate_size": 4 * width, "num_hidden_layers": vlayers, "num_attention_heads": width // 32,
          "num_channels": 3, "image_size": image, "patch_size": patch, "hidden_act": "gelu_pytorch_tanh",
          "layer_norm_eps": 1e-6, "attention_dropout": 0.0}
    tc = {"model_type": "mamba", "architectures": ["MambaForCausalLM"], "vocab_size": vocab, "hidden_size": d,
          "state_size": 16, "num_hidden_layers": layers, "layer_norm_epsilon": 1e-5, "pad_token_id": PAD,
          "bos_token_id": EOS, "eos_token_id": EOS, "expand": 2, "conv_kernel": 4, "use_bias": False,
          "use_conv_bias": True, "hidden_act": "silu", "residual_in_fp32": True, "time_step_rank": math.ceil(d / 16),
          "time_step_scale": 1.0, "time_step_min": 0.001, "time_step_max": 0.1, "tie_word_embeddings": False,
          "intermediate_size": 2 * d}
    cc = {"type": connector, "scan": scan, "d_state": 16, "expand": 2, "d_conv": 3, "dt_rank": "auto"}
    if connector == "mlp":   # no VSS: the scan settings do not apply
        cc = {"type": "mlp"}
    return {"model_type": "vlmamba", "vision_config": vc, "connector_config": cc, "text_config": tc,
            "image_preprocess": {"preset": "siglip-so400m-384", "resize": "pad"},
            "feature_layer": -1, "prompt_template": "plain"}


def export(model, cfg, out_dir, dtype=torch.bfloat16):
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.detach().float().cpu().to(dtype) for k, v in model.state_dict().items()}
    ref.save_safetensors(sd, os.path.join(out_dir, "model.safetensors"),
                         metadata={"format": "pt", "source": "zoo/reference/train.py"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return sum(v.numel() for v in sd.values()), os.path.getsize(os.path.join(out_dir, "model.safetensors"))


def pixels(imgs_u8):
    """uint8 (B, S, S, 3) -> SigLIP-normalised float (B, 3, S, S): (x/255 - 0.5) / 0.5."""
    return (imgs_u8.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------

def _train_chunk(args):
    seed, lo, hi, per, task = args
    return [ds.TASKS[task][2](seed, i, per) for i in range(lo, hi)]


def build_train(n_scenes, enc, device, seed=0, per_scene=6):
    """Images (N, S, S, 3) uint8 on device; rows of ids (M, T), loss masks (M, T), scene index (M)."""
    t0 = time.time()
    chunks = [(seed, lo, min(n_scenes, lo + 2000), per_scene, TASK["name"]) for lo in range(0, n_scenes, 2000)]
    if n_scenes >= 20000:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(min(16, os.cpu_count() or 1)) as pool:
            parts = pool.map(_train_chunk, chunks)
    else:
        parts = [_train_chunk(c) for c in chunks]
    items = [it for p in parts for it in p]
    t1 = time.time()
    imgs = []
    bs = 512 if str(device).startswith("cuda") else 1
    for k in range(0, n_scenes, bs):
        imgs.append(ds.render_batch([it[0] for it in items[k:k + bs]], device=device).to(device))
    imgs = torch.cat(imgs)
    t2 = time.time()
    table, rows, masks, qa_idx, qtype = {}, [], [], [], []
    for _, qas in items:
        for t, q, a in qas:
            k = table.get((q, a))
            if k is None:
                qi, ai = enc.encode(q), enc.encode(a) + [EOS]
                k = table[(q, a)] = len(rows)
                rows.append(qi + ai)
                masks.append([False] * len(qi) + [True] * len(ai))
            qa_idx.append(k)
            qtype.append(task_types().index(t))
    qa_idx = torch.tensor(qa_idx)
    text_len = max(len(r) for r in rows)
    rows = [r + [PAD] * (text_len - len(r)) for r in rows]
    masks = [m + [False] * (text_len - len(m)) for m in masks]
    ids = torch.tensor(rows)[qa_idx]                                       # (M, T)
    mask = torch.tensor(masks)[qa_idx]                                     # (M, T)
    scene = torch.arange(n_scenes).repeat_interleave(per_scene)           # (M)
    qtype = torch.tensor(qtype)
    log("data: %d scenes (%.1fs), rendered (%.1fs), %d QA rows, %d distinct, text length <= %d (%.1fs); types %s" % (
        n_scenes, t1 - t0, t2 - t1, len(qa_idx), len(rows), text_len, time.time() - t2,
        torch.bincount(qtype, minlength=len(task_types())).tolist()))
    return imgs, ids.to(device), mask.to(device), scene.to(device), qtype.to(device)


# ------------------------------------------------------------------------------------------------
# evaluation with the reference (float32, greedy), parallel over processes
# ------------------------------------------------------------------------------------------------

_EVAL = {}


def _eval_one(i):
    model, enc, items = _EVAL["model"], _EVAL["enc"], _EVAL["items"]
    img, q = items[i][0], items[i][1]
    with torch.no_grad():
        out = model.greedy(pixels(img[None]), enc.encode(q), 24, stop_at=EOS)["ids"]
    return enc.decode(out).strip()


def eval_reference(model_dir, items, enc, procs=None):
    """items: [(uint8 image (S, S, 3), question, answer, type)]. Returns (answers, per-type accuracy)."""
    torch.set_grad_enabled(False)
    _EVAL.update(model=ref.VLMamba(model_dir, torch.float32), enc=enc, items=items)
    procs = procs or min(16, os.cpu_count() or 1)
    if procs > 1 and len(items) > 8:
        import multiprocessing as mp
        torch.set_num_threads(1)
        with mp.get_context("fork").Pool(procs) as pool:
            answers = pool.map(_eval_one, range(len(items)), chunksize=4)
    else:
        answers = [_eval_one(i) for i in range(len(items))]
    return answers, score(answers, items)


def score(answers, items):
    acc = {}
    for t in [t for t in ds.ALL_TYPES if any(it[3] == t for it in items)] + ["overall"]:
        sel = [i for i, it in enumerate(items) if t == "overall" or it[3] == t]
        if sel:
            ok = sum(answers[i].strip().lower() == items[i][2].strip().lower() for i in sel)
            acc[t] = {"correct": ok, "total": len(sel), "accuracy": round(100.0 * ok / len(sel), 2)}
    return acc


def load_split(qfile, gtfile, image_dir):
    """LLaVA questions + gt JSONL + PNGs -> items."""
    from PIL import Image
    import numpy as np
    gt = {}
    with open(gtfile) as f:
        for line in f:
            g = json.loads(line)
            gt[g["question_id"]] = g
    items = []
    with open(qfile) as f:
        for line in f:
            q = json.loads(line)
            img = torch.from_numpy(np.array(Image.open(os.path.join(image_dir, q["image"])).convert("RGB")))
            g = gt[q["question_id"]]
            items.append((img, q["text"], g["answer"], g["type"]))
    return items


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------

def check_scan(seed=0):
    """scan_batched vs selective_scan_ref on random inputs, float64: values and gradients."""
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for (b, G, dg, L, n) in [(2, 1, 5, 7, 3), (1, 2, 4, 9, 4), (3, 4, 3, 1, 2), (2, 2, 6, 13, 5)]:
        u = torch.randn(b, G, dg, L, generator=g, dtype=torch.float64, requires_grad=True)
        dl = (torch.rand(b, G, dg, L, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
        A = (-torch.rand(G, dg, n, generator=g, dtype=torch.float64) * 3).requires_grad_()
        Bm = torch.randn(b, G, n, L, generator=g, dtype=torch.float64, requires_grad=True)
        Cm = torch.randn(b, G, n, L, generator=g, dtype=torch.float64, requires_grad=True)
        D = torch.randn(G, dg, generator=g, dtype=torch.float64, requires_grad=True)
        ins = (u, dl, A, Bm, Cm, D)
        y1 = scan_batched(*ins, dtype=torch.float64)
        y2 = ref.selective_scan_ref(u.reshape(b, G * dg, L), dl.reshape(b, G * dg, L), A.reshape(G * dg, n),
                                    Bm, Cm, D=D.reshape(-1)).reshape(b, G, dg, L)
        w = torch.randn(y1.shape, generator=g, dtype=torch.float64)
        g1 = torch.autograd.grad((y1 * w).sum(), ins)
        g2 = torch.autograd.grad((y2 * w).sum(), ins)
        worst = max(worst, float((y1 - y2).detach().abs().max() / y2.detach().abs().max()))
        for a, c in zip(g1, g2):
            worst = max(worst, float((a - c).abs().max() / c.abs().max()))
    return worst


def check_model(model, cfg, out_dir, enc, device):
    """Exported (f32) copy through the reference vs the training module, float32 on CPU."""
    d = os.path.join(out_dir, "_check")
    export(model, cfg, d, dtype=torch.float32)
    import shutil
    shutil.copy(os.path.join(out_dir, "tokenizer.json"), d)
    items = [ds.test_item(1, "test", i) for i in range(2)]
    imgs = ds.render_batch([it[0] for it in items])
    r = ref.VLMamba(d, torch.float32)
    m = model.float().cpu().eval()
    worst = 0.0
    with torch.no_grad():
        for k, it in enumerate(items):
            ids = enc.encode(it[2]) + enc.encode(it[3])
            pv = pixels(imgs[k:k + 1])
            a = r.forward(pv, ids)["logits"]
            b = m(pv, torch.tensor([ids]))[0]
            worst = max(worst, float((a - b).abs().max() / a.abs().max()))
    model.to(device).train()
    shutil.rmtree(d)
    return worst


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------

def main():
    import argparse
    ap = argparse.ArgumentParser(description="train the shapes VL-Mamba")
    ap.add_argument("--out", help="output model directory")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--minutes", type=float, default=4.5, help="training wall-clock budget")
    ap.add_argument("--scenes", type=int, default=300000)
    ap.add_argument("--batch", type=int, default=384)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time budget)")
    ap.add_argument("--test", type=int, default=1000, help="held-out questions for the reference eval")
    ap.add_argument("--small", action="store_true", help="tiny model for CPU debugging")
    ap.add_argument("--check", action="store_true", help="check the scan and the model against the reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--connector", default="vss_l2", choices=["mlp", "vss_mlp", "vss_l2"],
                    help="connector (SPEC §2.1); ignored with --init")
    ap.add_argument("--scan", default="bsm", choices=["bsm", "csm"], help="VSS scan (SPEC §2.2); ignored for mlp")
    ap.add_argument("--report", help="train report path (default: OUT/../train_report.json)")
    ap.add_argument("--init", help="continue from an exported model directory (its weights and tokenizer)")
    ap.add_argument("--eval-only", action="store_true")
    ap.add_argument("-m", "--model", help="model directory (--eval-only)")
    ap.add_argument("--questions")
    ap.add_argument("--gt")
    ap.add_argument("--images")
    ap.add_argument("--answers-out")
    ap.add_argument("--procs", type=int, default=0, help="--eval-only: processes (0: up to 16)")
    # issue 16: the mixed task set, the fused scan, shared data and equal steps across concurrent runs
    ap.add_argument("--task", default="classic", choices=sorted(ds.TASKS), help="dataset task set")
    ap.add_argument("--scan-impl", default="auto", choices=["auto", "loop", "triton"],
                    help="selective scans: fused Triton kernels on CUDA (auto, when Triton is there) or scan_batched")
    ap.add_argument("--prepare-data", help="build tokenizer, training rows and test images into this file and exit")
    ap.add_argument("--data", help="train on a --prepare-data file (tokenizer.json beside it) instead of building data")
    ap.add_argument("--sync-dir", help="equal steps across concurrent runs: barrier, step-time report, shared total "
                                       "(written by ablation_parallel.py)")
    ap.add_argument("--name", default="run", help="this run's name in --sync-dir")
    ap.add_argument("--rate-steps", type=int, default=50, help="--sync-dir: ms/step measured over steps 10..this")
    ap.add_argument("--deadline", type=float, default=0, help="stop training at this Unix time (a safety net)")
    ap.add_argument("--eval-every", type=int, default=200, help="teacher-forced test check every this many steps")
    ap.add_argument("--tf-test", type=int, default=500, help="questions in the teacher-forced check")
    ap.add_argument("--no-eval", action="store_true", help="skip the final reference eval (done elsewhere)")
    a = ap.parse_args()
    TASK["name"] = a.task
    SCAN_IMPL["name"] = a.scan_impl

    if a.eval_only:
        enc = ByteBPE(os.path.join(a.model, "tokenizer.json"))
        items = load_split(a.questions, a.gt, a.images)
        t0 = time.time()
        answers, acc = eval_reference(a.model, items, enc, a.procs or None)
        log(json.dumps(acc, indent=1))
        log("reference eval: %d questions in %.1fs" % (len(items), time.time() - t0))
        if a.answers_out:
            with open(a.questions) as fq:
                qids = [json.loads(line)["question_id"] for line in fq if line.strip()]
            with open(a.answers_out, "w") as f:
                for qid, it, ans in zip(qids, items, answers):
                    f.write(json.dumps({"question_id": qid, "question": it[1], "answer": ans, "gt": it[2],
                                        "type": it[3]}) + "\n")
        return

    t_start = time.time()
    dev = torch.device(a.device)
    if a.prepare_data:
        prepare_data(a, dev)
        return
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    shared = None
    if a.data:
        import shutil
        shared = torch.load(a.data)
        TASK["name"] = shared["task"]
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(a.data)), "tokenizer.json"), a.out)
        enc, tok_src = ByteBPE(os.path.join(a.out, "tokenizer.json")), shared["tokenizer"]
        cfg = make_config((enc.size + 15) // 16 * 16, connector=a.connector, scan=a.scan,
                          **({"width": 32, "vlayers": 2, "d": 32, "layers": 2} if a.small else {}))
    elif a.init:
        import shutil
        if os.path.abspath(a.init) != os.path.abspath(a.out):
            shutil.copy(os.path.join(a.init, "tokenizer.json"), a.out)
        enc, tok_src = ByteBPE(os.path.join(a.out, "tokenizer.json")), "from " + a.init
        cfg = ref.load_config(a.init)
    else:
        enc, tok_src = make_tokenizer(a.out)
        vocab = (enc.size + 15) // 16 * 16
        cfg = make_config(vocab, connector=a.connector, scan=a.scan,
                          **({"width": 32, "vlayers": 2, "d": 32, "layers": 2} if a.small else {}))
    model = ShapesVLMamba(cfg, a.seed)
    if a.init:
        sd = {k: v.float() for k, v in ref.load_weights(a.init).items()}
        model.load_state_dict(sd)
        log("init: loaded %d tensors from %s" % (len(sd), a.init))
    model = model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    n_conn = sum(p.numel() for p in model.mm_projector.parameters())
    log("model: %d parameters (%.2f M; connector %s, %d); tokenizer %s, %d ids, embedding rows %d" % (
        n_params, n_params / 1e6, json.dumps(cfg["connector_config"]), n_conn, tok_src, enc.size,
        cfg["text_config"]["vocab_size"]))
    if a.check:
        log("check: scan_batched vs selective_scan_ref (values, grads, float64): max rel err %.2e" % check_scan())
        log("check: training module vs reference VLMamba logits (float32): max rel err %.2e" % (
            check_model(model, cfg, a.out, enc, dev)))

    if shared is not None:
        imgs, ids, mask, scene, qtype = [shared[k].to(dev) for k in ("imgs", "ids", "mask", "scene", "qtype")]
        test_items = [(None,) + tuple(t) for t in shared["test"]][:a.test]
        test_imgs = shared["test_imgs"][:a.test].to(dev)
        log("data: %s (%d scenes, %d QA rows, task %s, data seed %d)" % (
            a.data, imgs.shape[0], ids.shape[0], shared["task"], shared["seed"]))
        del shared
    else:
        imgs, ids, mask, scene, qtype = build_train(a.scenes, enc, dev, a.seed)
        test_items = [ds.TASKS[TASK["name"]][1](a.seed, "test", i) for i in range(a.test)]
        test_imgs = render_items(test_items, dev)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "A_log" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "A_log" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-8, **({"fused": True} if dev.type == "cuda" else {}))
    budget = a.minutes * 60.0
    warmup = 200
    total = a.max_steps or 10 ** 9
    amp = dev.type == "cuda" or os.environ.get("SHAPES_AMP_CPU") == "1"   # the latter only to test bf16 paths
    step, t_train, losses = 0, time.time(), []
    hist, sync_ms, stopped_early = [], None, False
    tf_n = min(a.tf_test, len(test_items))
    model.train()
    while True:
        if a.sync_dir and step == 0:
            _sync_put(a.sync_dir, a.name + ".ready", "1")
            _sync_wait(a.sync_dir, "go")
            t_train = time.time()
        if a.sync_dir and step == a.rate_steps:   # equal steps: report ms/step, wait for the shared total
            if dev.type == "cuda":
                torch.cuda.synchronize()
            sync_ms = 1e3 * (time.time() - t_first) / (a.rate_steps - 10)
            _sync_put(a.sync_dir, a.name + ".rate", "%.3f" % sync_ms)
            total = int(_sync_wait(a.sync_dir, "total"))
            log("sync: %.1f ms/step over steps 10-%d with the others running; total %d steps" % (
                sync_ms, a.rate_steps, total))
        if a.deadline and time.time() > a.deadline:
            log("deadline reached at step %d: stopping" % step)
            stopped_early = True
            break
        if step == 30 and not a.max_steps and not a.sync_dir:   # fix the schedule length from the measured step time
            per = (time.time() - t_first) / 20
            total = max(step + 1, int((budget - (time.time() - t_train)) / per) + step)
            mem = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else 0.0
            log("schedule: %.1f ms/step -> %d steps (peak GPU memory %.1f GiB)" % (per * 1e3, total, mem))
        if step == 10:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_first = time.time()
        if step >= total:
            break
        lr = a.lr * min(1.0, (step + 1) / warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))
        for gr in opt.param_groups:
            gr["lr"] = lr
        idx = torch.randint(0, ids.shape[0], (a.batch,), device=dev)
        b_ids, b_mask = ids[idx], mask[idx]                                # (B, T); no host sync in the step
        pix = pixels(imgs[scene[idx]])
        try:
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(pix, b_ids)                                 # (B, T, V)
            # position j predicts token j+1; the loss covers answer tokens and the closing EOS
            lg = logits[:, :-1].float()
            tgt = torch.where(b_mask[:, 1:], b_ids[:, 1:], torch.full_like(b_ids[:, 1:], -100))
            loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        except RuntimeError as e:   # out of memory on the first steps: halve the batch and go on
            if "out of memory" not in str(e) or step > 5 or a.batch <= 32:
                raise
            logits = lg = loss = None
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            a.batch //= 2
            log("out of memory: batch -> %d" % a.batch)
            continue
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()) if step % 50 == 0 or step < 10 else None)
        if step % a.eval_every == 0 or step == total - 1:
            tf = teacher_forced(model, test_imgs[:tf_n], test_items[:tf_n], enc, dev, amp)
            hist.append({"step": step, "time": round(time.time() - t_train, 1), "loss": float(loss), "tf_acc": tf})
            log("step %5d  t %6.1fs  lr %.2e  loss %.4f  test teacher-forced exact %s" % (
                step, time.time() - t_train, lr, float(loss), json.dumps(tf)))
            model.train()
        step += 1
    t_train = time.time() - t_train
    log("trained %d steps in %.1fs (batch %d, %d samples)" % (step, t_train, a.batch, step * a.batch))
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else 0.0

    model.eval()
    n_params, size = export(model, cfg, a.out)
    log("exported %s: %d parameters, model.safetensors %d bytes (bf16)" % (a.out, n_params, size))
    items = [(test_imgs[i].cpu(), it[2], it[3], it[1]) for i, it in enumerate(test_items)]
    answers, acc = [], None
    if not a.no_eval:
        t0 = time.time()
        answers, acc = eval_reference(a.out, items, enc)
        log("reference eval (float32 greedy, %d questions, %.1fs): %s" % (len(items), time.time() - t0, json.dumps(acc)))
    with open(a.report or os.path.join(a.out, "..", "train_report.json"), "w") as f:
        json.dump({"accuracy": acc, "connector_config": cfg["connector_config"], "connector_params": n_conn,
                   "minutes": a.minutes, "seed": a.seed, "steps": step, "train_seconds": round(t_train, 1), "batch": a.batch,
                   "scenes": a.scenes if not a.data else int(imgs.shape[0]), "params": n_params, "bytes": size,
                   "history": hist, "losses": [(i, l) for i, l in enumerate(losses) if l is not None],
                   "task": TASK["name"], "scan_impl": SCAN_IMPL["name"], "sync_ms_per_step": sync_ms,
                   "stopped_early": stopped_early, "planned_steps": total, "peak_gpu_gib": round(peak, 2),
                   "total_seconds": round(time.time() - t_start, 1), "tokenizer": tok_src,
                   "wrong": [{"q": it[1], "gt": it[2], "got": ans} for it, ans in zip(items, answers)
                             if ans.strip().lower() != it[2].lower()][:60]}, f, indent=1)
    log("total %.1fs" % (time.time() - t_start))


def _sync_put(d, name, text):
    tmp = os.path.join(d, name + ".tmp%d" % os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(d, name))


def _sync_wait(d, name, timeout=600):
    path, t0 = os.path.join(d, name), time.time()
    while not os.path.exists(path):
        if time.time() - t0 > timeout:
            raise RuntimeError("sync: no %s after %ds" % (path, timeout))
        time.sleep(0.05)
    with open(path) as f:
        return f.read().strip()


def render_items(items, dev):
    tb = 512 if dev.type == "cuda" else 1
    return torch.cat([ds.render_batch([it[0] for it in items[k:k + tb]], device=dev)
                      for k in range(0, len(items), tb)]).to(dev)   # (N, S, S, 3) uint8


def prepare_data(a, dev):
    """--prepare-data FILE: tokenizer.json beside FILE; FILE holds the training rows, images and the test set,
    so that concurrent runs train on identical data without building it each."""
    t0 = time.time()
    out_dir = os.path.dirname(os.path.abspath(a.prepare_data))
    os.makedirs(out_dir, exist_ok=True)
    enc, tok_src = make_tokenizer(out_dir)
    imgs, ids, mask, scene, qtype = build_train(a.scenes, enc, dev, a.seed)
    test_items = [ds.TASKS[TASK["name"]][1](a.seed, "test", i) for i in range(a.test)]
    test_imgs = render_items(test_items, dev)
    torch.save({"imgs": imgs.cpu(), "ids": ids.cpu(), "mask": mask.cpu(), "scene": scene.cpu(), "qtype": qtype.cpu(),
                "test_imgs": test_imgs.cpu(), "test": [it[1:] for it in test_items], "task": TASK["name"],
                "seed": a.seed, "tokenizer": tok_src}, a.prepare_data)
    log("prepared %s in %.1fs" % (a.prepare_data, time.time() - t0))


def teacher_forced(model, imgs, items, enc, dev, amp):
    """Exact match with teacher forcing (all answer tokens and EOS argmax-correct), per type."""
    model.eval()
    rows, masks = [], []
    for it in items:
        qi, ai = enc.encode(it[2]), enc.encode(it[3]) + [EOS]
        rows.append(qi + ai)
        masks.append([False] * len(qi) + [True] * len(ai))
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [PAD] * (T - len(r)) for r in rows], device=dev)
    mk = torch.tensor([m + [False] * (T - len(m)) for m in masks], device=dev)
    ok = []
    with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
        for k in range(0, len(items), 250):
            lg = model(pixels(imgs[k:k + 250]), ids[k:k + 250])
            pred = lg[:, :-1].argmax(-1)
            good = (pred == ids[k:k + 250, 1:]) | ~mk[k:k + 250, 1:]
            ok.append(good.all(1).cpu())
    ok = torch.cat(ok)
    res = {}
    for t in task_types():
        sel = [i for i, it in enumerate(items) if it[1] == t]
        res[t] = round(100.0 * float(ok[sel].float().mean()), 1) if sel else None
    res["all"] = round(100.0 * float(ok.float().mean()), 1)
    return res


if __name__ == "__main__":
    main()
