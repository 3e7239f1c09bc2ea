"""A fused selective scan for training (issue 16): Triton kernels, forward and backward, in float32.

train.py's `scan_batched` materialises several (L, B, D, N) float32 tensors per scan and walks them once per
time step in each direction, so training was bound by memory traffic (zoo/shapes-vlmamba/README.md,
"Training faster"). Here one program owns BD channels of one sample and group and keeps the state
h (BD, N) in registers while it walks the L steps:

  forward   h_t = exp(delta_t A) * h_{t-1} + delta_t u_t B_t      (ZOH for A, Euler for B: selective_scan_ref)
            y_t = <h_t, C_t> + D u_t                                  and h_t is stored once, for the backward
  backward  walks t = L-1 .. 0 with g = dLoss/dh_t carried in registers:
            g_t = dy_t C_t + exp(delta_{t+1} A) g_{t+1}
            dC_t = sum_d dy_t h_t      dB_t = sum_d g_t delta_t u_t   (per channel block; summed outside)
            ddelta_t = sum_n g_t h_{t-1} exp(delta_t A) A + sum_n g_t u_t B_t
            du_t = delta_t sum_n g_t B_t + D dy_t      dA += g_t h_{t-1} exp(delta_t A) delta_t    dD += dy_t u_t

Layout: time-major and contiguous. u, delta: (L, B, G, DG); Bm, Cm: (L, B, G, N), group g serving its DG
channels; A: (G, DG, N); D: (G, DG). `scan_fused` takes and returns scan_batched's layout.

`emulate_backward` is the same backward written with torch ops (one loop over t), so that the formulas can be
checked on a CPU (`python3 zoo/reference/fused_scan.py`); `check` compares the Triton kernels with
train.scan_batched (values and gradients) on a GPU.
"""

import torch

try:
    import triton
    import triton.language as tl
except ImportError:   # CPU-only machines: scan_fused is unavailable, emulate_backward still works
    triton = None

BD = 32   # channels per program


if triton is not None:
    @triton.jit
    def _scan_fwd(u_ptr, dl_ptr, a_ptr, b_ptr, c_ptr, d_ptr, y_ptr, h_ptr, L, BG, G, DG, N,
                  BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
        pid = tl.program_id(0)                      # b * G + g
        pd = tl.program_id(1)                       # channel block
        g = pid % G
        d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, BLOCK_N)
        md, mn = d < DG, n < N
        m2 = md[:, None] & mn[None, :]
        A = tl.load(a_ptr + (g * DG + d)[:, None] * N + n[None, :], mask=m2, other=0.0)   # (BD, BN)
        Dv = tl.load(d_ptr + g * DG + d, mask=md, other=0.0)
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        row = pid.to(tl.int64) * DG + d                                     # channel index within (B, G, DG)
        for t in range(L):
            tt = t.to(tl.int64)
            off = tt * BG * DG + row
            uu = tl.load(u_ptr + off, mask=md, other=0.0)
            dd = tl.load(dl_ptr + off, mask=md, other=0.0)
            offn = tt * BG * N + pid * N + n
            bb = tl.load(b_ptr + offn, mask=mn, other=0.0)
            cc = tl.load(c_ptr + offn, mask=mn, other=0.0)
            h = tl.exp(dd[:, None] * A) * h + (dd * uu)[:, None] * bb[None, :]
            tl.store(h_ptr + off[:, None] * N + n[None, :], h, mask=m2)
            y = tl.sum(h * cc[None, :], axis=1) + Dv * uu
            tl.store(y_ptr + off, y, mask=md)

    @triton.jit
    def _scan_bwd(u_ptr, dl_ptr, a_ptr, b_ptr, c_ptr, d_ptr, h_ptr, dy_ptr,
                  du_ptr, ddl_ptr, da_ptr, db_ptr, dc_ptr, dd_ptr, L, BG, G, DG, N, NDB,
                  BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
        pid = tl.program_id(0)
        pd = tl.program_id(1)
        g = pid % G
        d = pd * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, BLOCK_N)
        md, mn = d < DG, n < N
        m2 = md[:, None] & mn[None, :]
        A = tl.load(a_ptr + (g * DG + d)[:, None] * N + n[None, :], mask=m2, other=0.0)
        Dv = tl.load(d_ptr + g * DG + d, mask=md, other=0.0)
        row = pid.to(tl.int64) * DG + d
        carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)             # exp(delta_{t+1} A) g_{t+1}
        dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for i in range(L):
            t = L - 1 - i
            tt = t.to(tl.int64)
            off = tt * BG * DG + row
            uu = tl.load(u_ptr + off, mask=md, other=0.0)
            dd = tl.load(dl_ptr + off, mask=md, other=0.0)
            gy = tl.load(dy_ptr + off, mask=md, other=0.0)
            offn = tt * BG * N + pid * N + n
            bb = tl.load(b_ptr + offn, mask=mn, other=0.0)
            cc = tl.load(c_ptr + offn, mask=mn, other=0.0)
            h_t = tl.load(h_ptr + off[:, None] * N + n[None, :], mask=m2, other=0.0)
            h_p = tl.load(h_ptr + (off - BG * DG)[:, None] * N + n[None, :], mask=m2 & (t > 0), other=0.0)
            gr = carry + gy[:, None] * cc[None, :]                          # dLoss/dh_t
            dA_t = tl.exp(dd[:, None] * A)
            t1 = gr * h_p * dA_t                                            # d/d(delta_t A)
            ddl = tl.sum(t1 * A, axis=1) + uu * tl.sum(gr * bb[None, :], axis=1)
            du = dd * tl.sum(gr * bb[None, :], axis=1) + Dv * gy
            dA_acc += t1 * dd[:, None]
            dD_acc += gy * uu
            dB = tl.sum(gr * (dd * uu)[:, None], axis=0)                    # (BN), this block's part
            dC = tl.sum(gy[:, None] * h_t, axis=0)
            part = (tt * BG + pid) * NDB + pd
            tl.store(db_ptr + part * N + n, dB, mask=mn)
            tl.store(dc_ptr + part * N + n, dC, mask=mn)
            tl.store(du_ptr + off, du, mask=md)
            tl.store(ddl_ptr + off, ddl, mask=md)
            carry = gr * dA_t
        tl.store(da_ptr + row[:, None] * N + n[None, :], dA_acc, mask=m2)
        tl.store(dd_ptr + row, dD_acc, mask=md)


def _pow2(n):
    p = 1
    while p < n:
        p *= 2
    return max(p, 2)


class _FusedScan(torch.autograd.Function):
    """u, dl: (L, B, G, DG); A: (G, DG, N); Bm, Cm: (L, B, G, N); D: (G, DG); float32, contiguous, CUDA."""

    @staticmethod
    def forward(ctx, u, dl, A, Bm, Cm, D):
        L, B, G, DG = u.shape
        N = A.shape[-1]
        y = torch.empty_like(u)
        hs = torch.empty(L, B, G, DG, N, device=u.device, dtype=torch.float32)
        grid = (B * G, triton.cdiv(DG, BD))
        _scan_fwd[grid](u, dl, A, Bm, Cm, D, y, hs, L, B * G, G, DG, N, BLOCK_D=BD, BLOCK_N=_pow2(N), num_warps=2)
        ctx.save_for_backward(u, dl, A, Bm, Cm, D, hs)
        return y

    @staticmethod
    def backward(ctx, dy):
        u, dl, A, Bm, Cm, D, hs = ctx.saved_tensors
        L, B, G, DG = u.shape
        N = A.shape[-1]
        ndb = triton.cdiv(DG, BD)
        dy = dy.contiguous().float()
        du, ddl = torch.empty_like(u), torch.empty_like(u)
        dA = torch.empty(B * G, DG, N, device=u.device, dtype=torch.float32)
        dD = torch.empty(B * G, DG, device=u.device, dtype=torch.float32)
        dB = torch.empty(L, B * G, ndb, N, device=u.device, dtype=torch.float32)
        dC = torch.empty_like(dB)
        _scan_bwd[(B * G, ndb)](u, dl, A, Bm, Cm, D, hs, dy, du, ddl, dA, dB, dC, dD, L, B * G, G, DG, N, ndb,
                                BLOCK_D=BD, BLOCK_N=_pow2(N), num_warps=2)
        return (du, ddl, dA.view(B, G, DG, N).sum(0), dB.sum(2).view(L, B, G, N), dC.sum(2).view(L, B, G, N),
                dD.view(B, G, DG).sum(0))


def available(device):
    return triton is not None and torch.device(device).type == "cuda"


def scan_fused(u, delta, A, Bm, Cm, D):
    """Same contract as train.scan_batched (float32): u, delta (b, G, dg, L) with delta softplus'ed; A (G, dg, N);
    Bm, Cm (b, G, N, L); D (G, dg). Returns y (b, G, dg, L) = scan + D*u."""
    with torch.autocast(device_type="cuda", enabled=False):
        tm = [x.float().permute(3, 0, 1, 2).contiguous() for x in (u, delta, Bm, Cm)]   # time-major
        y = _FusedScan.apply(tm[0], tm[1], A.float().contiguous(), tm[2], tm[3], D.float().contiguous())
        return y.permute(1, 2, 3, 0)                                        # (b, G, dg, L)


def emulate_backward(u, dl, A, Bm, Cm, D, dy):
    """The backward kernel's formulas with torch ops (time-major inputs as _FusedScan); for CPU checks."""
    L, B, G, DG = u.shape
    dA_all = torch.exp(dl[..., None] * A)                                  # (L, B, G, DG, N)
    hs, h = [], torch.zeros(B, G, DG, A.shape[-1], dtype=u.dtype)
    for t in range(L):
        h = dA_all[t] * h + (dl[t] * u[t])[..., None] * Bm[t][:, :, None, :]
        hs.append(h)
    carry = torch.zeros_like(h)
    du, ddl, dB, dC = [torch.zeros_like(x) for x in (u, u, Bm, Cm)]
    dA, dD = torch.zeros_like(A), torch.zeros_like(D)
    for t in range(L - 1, -1, -1):
        h_p = hs[t - 1] if t > 0 else torch.zeros_like(h)
        gr = carry + dy[t][..., None] * Cm[t][:, :, None, :]
        t1 = gr * h_p * dA_all[t]
        bsum = (gr * Bm[t][:, :, None, :]).sum(-1)
        ddl[t] = (t1 * A).sum(-1) + u[t] * bsum
        du[t] = dl[t] * bsum + D * dy[t]
        dA += (t1 * dl[t][..., None]).sum(0)
        dD += (dy[t] * u[t]).sum(0)
        dB[t] = (gr * (dl[t] * u[t])[..., None]).sum(2)
        dC[t] = (dy[t][..., None] * hs[t]).sum(2)
        carry = gr * dA_all[t]
    return du, ddl, dA, dB, dC, dD


def _random(b, G, dg, L, n, device, dtype, gen):
    u = torch.randn(b, G, dg, L, generator=gen, dtype=dtype).to(device)
    dl = (torch.rand(b, G, dg, L, generator=gen, dtype=dtype) * 0.5 + 0.01).to(device)
    A = (-torch.rand(G, dg, n, generator=gen, dtype=dtype) * 3 - 0.1).to(device)
    Bm = torch.randn(b, G, n, L, generator=gen, dtype=dtype).to(device)
    Cm = torch.randn(b, G, n, L, generator=gen, dtype=dtype).to(device)
    D = torch.randn(G, dg, generator=gen, dtype=dtype).to(device)
    return [x.requires_grad_() for x in (u, dl, A, Bm, Cm, D)]


def check(device="cuda", seed=0):
    """Triton scan vs train.scan_batched in float64 on the same inputs: values and all gradients. Returns the
    worst relative error (max |a - b| / max |b| per tensor)."""
    import train
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for (b, G, dg, L, n) in [(2, 1, 5, 7, 3), (1, 2, 40, 9, 4), (3, 4, 33, 1, 2), (2, 2, 64, 70, 16), (4, 1, 512, 84, 16)]:
        ins = _random(b, G, dg, L, n, device, torch.float64, gen)
        y_ref = train.scan_batched(*ins, dtype=torch.float64)
        w = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64).to(device)
        g_ref = torch.autograd.grad((y_ref * w).sum(), ins)
        ins32 = [x.detach().float().requires_grad_() for x in ins]
        y = scan_fused(*ins32)
        g = torch.autograd.grad((y * w.float()).sum(), ins32)
        for a, c in zip([y] + list(g), [y_ref] + list(g_ref)):
            worst = max(worst, float((a.double() - c).abs().max() / c.abs().max()))
    return worst


def _check_emulation():
    """CPU: emulate_backward vs autograd through train.scan_batched, float64."""
    import train
    gen = torch.Generator().manual_seed(1)
    worst = 0.0
    for (b, G, dg, L, n) in [(2, 1, 5, 7, 3), (1, 2, 4, 9, 4), (3, 4, 3, 1, 2), (2, 2, 6, 13, 5)]:
        ins = _random(b, G, dg, L, n, "cpu", torch.float64, gen)
        y = train.scan_batched(*ins, dtype=torch.float64)
        w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
        g_ref = torch.autograd.grad((y * w).sum(), ins)
        u, dl, A, Bm, Cm, D = [x.detach() for x in ins]
        tm = [x.permute(3, 0, 1, 2).contiguous() for x in (u, dl, Bm, Cm)]
        du, ddl, dA, dB, dC, dD = emulate_backward(tm[0], tm[1], A, tm[2], tm[3], D, w.permute(3, 0, 1, 2))
        mine = [du.permute(1, 2, 3, 0), ddl.permute(1, 2, 3, 0), dA, dB.permute(1, 2, 3, 0), dC.permute(1, 2, 3, 0), dD]
        for a, c in zip(mine, g_ref):
            worst = max(worst, float((a - c).abs().max() / c.abs().max()))
    return worst


if __name__ == "__main__":
    import os
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print("emulated backward vs autograd (float64, CPU): max rel err %.2e" % _check_emulation())
    if torch.cuda.is_available() and triton is not None:
        print("triton scan vs scan_batched (float32 vs float64, values and grads): max rel err %.2e" % check())
