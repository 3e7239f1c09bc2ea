"""Golden fixtures for the three connectors (SPEC §2.1, §2.3, §2.5) from the PyTorch reference.

For each connector type (mlp, vss_mlp_{bsm,csm}, vss_l2_{bsm,csm}) and grid (3x5, 1x1, 4x4) writes
tests/data/connectors/<type>_<H>x<W>.safetensors holding, in float32:
  mm_projector.*      the connector weights under their SPEC §2.5 names
  input  (H*W, C_v)   vision tokens, row-major over the grid
  output (H*W, d)     connector output
  VSS connectors also: vss.input (H*W, width), vss.scan_out.{k} (H*W, D_i) in direction k's own
  sequence order, vss.merged (H*W, D_i) (un-permuted sum, before out_norm), vss.output (H*W, width).
__metadata__ {"connector_config": JSON}. Weights depend on the type only (same in every grid);
inputs depend on type and grid. Compute is float64 by default (--float32 to compare).

    python3 zoo/reference/make_connector_fixtures.py [--out tests/data/connectors] [--float32]
"""

import argparse
import json
import math
import os
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlmamba_ref as ref  # noqa: E402

VISION_WIDTH = 24   # C_v
LM_WIDTH = 32       # d
GRIDS = [(3, 5), (1, 1), (4, 4)]
# name -> (type, scan, d_state); d_state varies so that both 4 and 8 reach both VSS types
CONNECTORS = {
    "mlp": ("mlp", None, None),
    "vss_mlp_bsm": ("vss_mlp", "bsm", 8),
    "vss_mlp_csm": ("vss_mlp", "csm", 4),
    "vss_l2_bsm": ("vss_l2", "bsm", 4),
    "vss_l2_csm": ("vss_l2", "csm", 4),
}
EXPAND = 2
D_CONV = 3


def gen(*key):
    """A generator seeded from a stable hash of the key (independent of visiting order)."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(repr(key).encode()) & 0x7FFFFFFF)
    return g


def normal(key, shape, std):
    return torch.randn(shape, generator=gen(*key), dtype=torch.float32) * std


def uniform(key, shape, lo, hi):
    return torch.rand(shape, generator=gen(*key), dtype=torch.float32) * (hi - lo) + lo


def inv_softplus(y):
    return y + torch.log(-torch.expm1(-y))


def draw_linear(tag, prefix, n_out, n_in, out, bias=True, gain=1.0):
    out[prefix + ".weight"] = normal((tag, prefix, "w"), (n_out, n_in), gain / math.sqrt(n_in))
    if bias:
        out[prefix + ".bias"] = normal((tag, prefix, "b"), (n_out,), 0.1)


def draw_layer_norm(tag, prefix, n, out):
    out[prefix + ".weight"] = uniform((tag, prefix, "w"), (n,), 0.8, 1.2)
    out[prefix + ".bias"] = normal((tag, prefix, "b"), (n,), 0.1)


def draw_vss(tag, prefix, width, k_dirs, d_state, out):
    """SS2D weights (SPEC §2.3 shapes) drawn so activations are O(1) (SPEC §8.4)."""
    di = EXPAND * width
    r = math.ceil(width / 16)
    p = prefix + "."
    out[p + "in_proj.weight"] = normal((tag, p, "in"), (2 * di, width), 1.0 / math.sqrt(width))
    out[p + "conv2d.weight"] = normal((tag, p, "cw"), (di, 1, D_CONV, D_CONV), 1.0 / D_CONV)
    out[p + "conv2d.bias"] = normal((tag, p, "cb"), (di,), 0.1)
    out[p + "x_proj_weight"] = normal((tag, p, "xp"), (k_dirs, r + 2 * d_state, di), 4.0 / math.sqrt(di))
    out[p + "dt_projs_weight"] = normal((tag, p, "dtw"), (k_dirs, di, r), 0.5 / math.sqrt(r))
    # exp/log in float64, then one rounding: float32 transcendentals differ by an ulp between torch builds
    dt = torch.exp(uniform((tag, p, "dt"), (k_dirs, di), math.log(1e-3), math.log(1e-1)).double())
    out[p + "dt_projs_bias"] = inv_softplus(dt).float()
    out[p + "A_logs"] = torch.log(uniform((tag, p, "A"), (k_dirs * di, d_state), 1.0, 16.0).double()).float()
    out[p + "Ds"] = uniform((tag, p, "D"), (k_dirs * di,), 0.5, 1.5)
    draw_layer_norm(tag, p + "out_norm", di, out)
    out[p + "out_proj.weight"] = normal((tag, p, "out"), (width, di), 1.0 / math.sqrt(di))


def draw_connector(tag, ctype, scan, d_state, c_v, d):
    """Random connector weights with SPEC §2.5 names (mm_projector.*)."""
    w = {}
    if ctype == "mlp":
        draw_linear(tag, "mm_projector.0", d, c_v, w)
        draw_linear(tag, "mm_projector.2", d, d, w)
        return w
    k_dirs = {"bsm": 2, "csm": 4}[scan]
    width = c_v if ctype == "vss_mlp" else d
    if ctype == "vss_l2":
        draw_linear(tag, "mm_projector.linear1", d, c_v, w)
    draw_vss(tag, "mm_projector.vss", width, k_dirs, d_state, w)
    draw_layer_norm(tag, "mm_projector.norm", width, w)
    if ctype == "vss_mlp":
        draw_linear(tag, "mm_projector.linear1", d, c_v, w)
    draw_linear(tag, "mm_projector.linear2", d, d, w)
    return w


def connector_config(ctype, scan, d_state, grid, c_v, d):
    cfg = {"type": ctype}
    if ctype != "mlp":
        cfg.update({"scan": scan, "d_state": d_state, "expand": EXPAND, "d_conv": D_CONV, "dt_rank": "auto"})
    cfg.update({"grid": list(grid), "vision_width": c_v, "lm_width": d})
    return cfg


# ------------------------------------------------------------------------------------------------
# independent check of the SS2D direction bookkeeping: explicit index lists, one scan per direction
# ------------------------------------------------------------------------------------------------

def direction_orders(hh, ww, scan):
    """For each direction, the row-major token index visited at each sequence step."""
    row = [h * ww + x for h in range(hh) for x in range(ww)]
    col = [h * ww + x for x in range(ww) for h in range(hh)]
    if scan == "bsm":
        return [row, row[::-1]]
    return [row, col, row[::-1], col[::-1]]


def ss2d_by_index(w, x, grid, scan):
    """SS2D merged output (L, D_i) computed direction by direction with explicit gathers/scatters."""
    hh, ww = grid
    di = w["x_proj_weight"].shape[2]
    n = w["A_logs"].shape[1]
    r = w["dt_projs_weight"].shape[2]
    xs, _ = ref.linear(x, w["in_proj.weight"]).chunk(2, dim=-1)
    xs = torch.nn.functional.conv2d(xs.t().reshape(1, di, hh, ww), w["conv2d.weight"], w["conv2d.bias"],
                                    padding=D_CONV // 2, groups=di)
    xs = ref.silu(xs[0].reshape(di, hh * ww))                              # (D_i, L) row-major
    merged = torch.zeros(hh * ww, di, dtype=x.dtype)
    outs = []
    for k, order in enumerate(direction_orders(hh, ww, scan)):
        idx = torch.tensor(order)
        seq = xs[:, idx]                                                   # (D_i, L) direction order
        dbl = w["x_proj_weight"][k] @ seq                                  # (R + 2N, L)
        dt, Bm, Cm = torch.split(dbl, [r, n, n], dim=0)
        delta = w["dt_projs_weight"][k] @ dt                               # (D_i, L)
        sl = slice(k * di, (k + 1) * di)
        y = ref.selective_scan_ref(seq[None], delta[None], -torch.exp(w["A_logs"][sl]), Bm[None], Cm[None],
                                   D=w["Ds"][sl], delta_bias=w["dt_projs_bias"][k], delta_softplus=True)[0]
        outs.append(y.t())
        merged.index_add_(0, idx, y.t())                                   # scatter back to row-major
    return outs, merged


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def rms(t):
    return float(t.double().pow(2).mean().sqrt())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "connectors"))
    ap.add_argument("--float32", action="store_true", help="compute in float32 instead of float64")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    dtype = torch.float32 if a.float32 else torch.float64
    os.makedirs(a.out, exist_ok=True)
    failed = 0
    print("%-22s %9s %8s %8s %8s %8s %8s %8s" % ("file", "bytes", "rms_out", "rms_vin", "rms_mrg", "scan%",
                                               "dirdiff", "idxchk"))
    for name, (ctype, scan, d_state) in CONNECTORS.items():
        weights = draw_connector(name, ctype, scan, d_state, VISION_WIDTH, LM_WIDTH)
        for grid in GRIDS:
            hh, ww = grid
            cfg = connector_config(ctype, scan, d_state, grid, VISION_WIDTH, LM_WIDTH)
            x = normal((name, grid, "input"), (hh * ww, VISION_WIDTH), 1.0)
            wc = {k: v.to(dtype) for k, v in weights.items()}
            trace = {} if ctype != "mlp" else None
            out = ref.connector_forward(wc, cfg, x.to(dtype), grid, trace=trace)
            tensors = dict(weights)
            tensors["input"] = x
            tensors["output"] = out.float()
            line = "%-22s" % ("%s_%dx%d" % (name, hh, ww))
            stats = [rms(out)]
            if trace is not None:
                for k, v in trace.items():
                    tensors[k] = v.float()
                vss = {k[len("mm_projector.vss."):]: v for k, v in wc.items() if k.startswith("mm_projector.vss.")}
                outs, merged = ss2d_by_index(vss, trace["vss.input"], grid, scan)
                err = max([rel(trace["vss.merged"], merged)] +
                          [rel(trace["vss.scan_out.%d" % k], o) for k, o in enumerate(outs)])
                # share of the merged sum that comes from the SSM state: the D skip contributes
                # (sum_k D_k) * u at every position whatever the direction bookkeeping
                ds = vss["Ds"].reshape(len(outs), -1).sum(0)
                u = _conv_branch(vss, trace["vss.input"], grid)
                scan_share = rms(trace["vss.merged"] - ds * u) / rms(trace["vss.merged"])
                # how different the two first directions are once aligned (0 would hide order bugs)
                dirdiff = rms(trace["vss.scan_out.0"] - trace["vss.scan_out.1"].flip(0)) / rms(trace["vss.scan_out.0"])
                stats += [rms(trace["vss.input"]), rms(trace["vss.merged"]), 100 * scan_share, dirdiff, err]
                if err > (1e-12 if dtype == torch.float64 else 1e-5):
                    failed += 1
                    print("!!! SS2D index check failed for %s %s: %.3e" % (name, grid, err))
            path = os.path.join(a.out, "%s_%dx%d.safetensors" % (name, hh, ww))
            ref.save_safetensors(tensors, path, {"connector_config": json.dumps(cfg, sort_keys=True)})
            size = os.path.getsize(path)
            if size > 100 * 1024:
                failed += 1
                print("!!! %s is %d bytes (> 100 KB)" % (path, size))
            print(line + " %9d" % size + "".join(" %8.3g" % s for s in stats))
    if failed:
        print("%d problem(s)" % failed)
        return 1
    print("done (%s compute, saved float32)" % str(dtype).replace("torch.", ""))
    return 0


def _conv_branch(w, x, grid):
    """SiLU(DWConv(x branch of in_proj)) in row-major order (L, D_i): the u of every direction."""
    hh, ww = grid
    di = w["x_proj_weight"].shape[2]
    xs, _ = ref.linear(x, w["in_proj.weight"]).chunk(2, dim=-1)
    xs = torch.nn.functional.conv2d(xs.t().reshape(1, di, hh, ww), w["conv2d.weight"], w["conv2d.bias"],
                                    padding=D_CONV // 2, groups=di)
    return ref.silu(xs[0].reshape(di, hh * ww)).t()


if __name__ == "__main__":
    sys.exit(main())
