"""Cross-check the reference (vlmamba_ref.py) against the transformers golden fixtures in tests/data.

Checks, each in float64 and float32 compute:
  * Mamba LM (tests/data/mamba/<cfg>/{hf-f32,ssm-f32}): logits, layer_out.{i}, norm_f_out;
    the bf16 files (hf-bf16, ssm-bf16) against logits_bf16 (weights rounded to bf16, fp32 compute);
    greedy_ids / greedy_logits with the recurrent decode.
  * Vision towers (tests/data/vision/{clip,siglip}/{hub,t5,full}): hidden_states.{i}, last_hidden_state.
  * Our own fixtures, when present (tests/data/connectors, tests/data/vlmamba): recomputed from the
    stored weights (float64) and compared with the stored outputs, so another torch build can confirm
    them (not a transformers check; printed separately).
Error = max |ref - golden| / max |golden| per tensor. Fails (exit 1) above 1e-5.

    python3 zoo/reference/check_against_transformers.py [--data tests/data]
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlmamba_ref as ref  # noqa: E402

TOL = 1e-5


def rel_err(a, b):
    a = a.double()
    b = b.double().reshape(a.shape)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


class Report:
    def __init__(self):
        self.rows = []
        self.failed = 0

    def add(self, what, err, tol=TOL):
        ok = err <= tol
        self.failed += 0 if ok else 1
        self.rows.append((what, err, ok))
        print("%-70s %.3e %s" % (what, err, "ok" if ok else "FAIL  (tol %.0e)" % tol), flush=True)

    def flag(self, what, ok):
        self.failed += 0 if ok else 1
        print("%-70s %s" % (what, "ok" if ok else "FAIL"), flush=True)


def check_mamba(data, rep):
    for cfg in ("tiny-tied", "tiny-untied"):
        gold = ref.load_safetensors(os.path.join(data, "mamba", cfg, "golden.safetensors"))
        ids = gold["input_ids"].tolist()
        n_layers = len([k for k in gold if k.startswith("layer_out.")])
        for dtype in (torch.float64, torch.float32):
            dn = str(dtype).replace("torch.", "")
            for naming in ("hf-f32", "ssm-f32"):
                lm = ref.MambaLM.from_dir(os.path.join(data, "mamba", cfg, naming), dtype)
                out = lm.forward(ids)
                worst = max(rel_err(out["layer_out"][i], gold["layer_out.%d" % i]) for i in range(n_layers))
                rep.add("mamba/%s/%s %s logits" % (cfg, naming, dn), rel_err(out["logits"], gold["logits"]))
                rep.add("mamba/%s/%s %s layer_out.* (worst)" % (cfg, naming, dn), worst)
                rep.add("mamba/%s/%s %s norm_f_out" % (cfg, naming, dn),
                        rel_err(out["norm_f_out"], gold["norm_f_out"]))
            for naming in ("hf-bf16", "ssm-bf16"):
                lm = ref.MambaLM.from_dir(os.path.join(data, "mamba", cfg, naming), dtype)
                rep.add("mamba/%s/%s %s logits vs logits_bf16" % (cfg, naming, dn),
                        rel_err(lm.forward(ids)["logits"], gold["logits_bf16"]))
            # greedy: recurrent decode must pick the same ids; its logits rows match greedy_logits
            lm = ref.MambaLM.from_dir(os.path.join(data, "mamba", cfg, "hf-f32"), dtype)
            n = gold["greedy_ids"].numel()
            g = lm.greedy(lm.embed(ids), n, mode="recurrent")
            rep.flag("mamba/%s %s greedy_ids (recurrent, %d)" % (cfg, dn, n), g["ids"] == gold["greedy_ids"].tolist())
            rep.add("mamba/%s %s greedy_logits (recurrent)" % (cfg, dn), rel_err(g["logits"], gold["greedy_logits"]))


def check_vision(data, rep):
    for tower in ("clip", "siglip"):
        gold = ref.load_safetensors(os.path.join(data, "vision", tower, "golden.safetensors"))
        n_hs = len([k for k in gold if k.startswith("hidden_states.")])
        for dtype in (torch.float64, torch.float32):
            dn = str(dtype).replace("torch.", "")
            for layout in ("hub", "t5", "full"):
                vt = ref.VisionTower.from_dir(os.path.join(data, "vision", tower, layout), dtype)
                out = vt.forward(gold["pixel_values"])
                for i in range(n_hs):
                    rep.add("vision/%s/%s %s hidden_states.%d" % (tower, layout, dn, i),
                            rel_err(out["hidden_states"][i], gold["hidden_states.%d" % i]))
                rep.add("vision/%s/%s %s last_hidden_state" % (tower, layout, dn),
                        rel_err(out["last_hidden_state"], gold["last_hidden_state"]))
                # features(): hidden_states[-2], CLIP without CLS
                f = vt.features(gold["pixel_values"], -2)
                expect = gold["hidden_states.%d" % (n_hs - 2)]
                expect = expect[:, 1:] if tower == "clip" else expect
                rep.add("vision/%s/%s %s features(-2)" % (tower, layout, dn), rel_err(f, expect))


def check_own_fixtures(data, rep):
    cdir = os.path.join(data, "connectors")
    if os.path.isdir(cdir):
        for fn in sorted(os.listdir(cdir)):
            t, meta = ref.load_safetensors(os.path.join(cdir, fn), with_metadata=True)
            cfg = json.loads(meta["connector_config"])
            w = {k: v.double() for k, v in t.items() if k.startswith("mm_projector.")}
            trace = {} if cfg["type"] != "mlp" else None
            out = ref.connector_forward(w, cfg, t["input"].double(), tuple(cfg["grid"]), trace=trace)
            err = rel_err(out, t["output"])
            for k, v in (trace or {}).items():
                err = max(err, rel_err(v, t[k]))
            rep.add("own/connectors/%s (output and vss.*)" % fn, err)
    vdir = os.path.join(data, "vlmamba")
    if os.path.isdir(vdir):
        for name in sorted(os.listdir(vdir)):
            g = ref.load_safetensors(os.path.join(vdir, name, "golden.safetensors"))
            m = ref.VLMamba(os.path.join(vdir, name), torch.float64)
            out = m.forward(g["pixel_values"], g["input_ids"].tolist())
            err = max(rel_err(out["features"][0], g["features"]), rel_err(out["prefix"], g["prefix"]),
                      rel_err(out["logits"], g["logits"]))
            rep.add("own/vlmamba/%s features/prefix/logits" % name, err)
            ids = m.greedy(g["pixel_values"], g["input_ids"].tolist(), g["greedy_ids"].numel())["ids"]
            rep.flag("own/vlmamba/%s greedy_ids" % name, ids == g["greedy_ids"].tolist())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "tests", "data"))
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    print("torch", torch.__version__)
    rep = Report()
    check_mamba(a.data, rep)
    check_vision(a.data, rep)
    check_own_fixtures(a.data, rep)
    worst = {}
    for what, err, _ in rep.rows:
        key = ("float64" if (" float64 " in what or what.startswith("own/")) else "float32", what.split("/")[0])
        worst[key] = max(worst.get(key, 0.0), err)
    print("\nworst relative error:")
    for (dn, part), err in sorted(worst.items()):
        print("  %-8s %-7s %.3e" % (part, dn, err))
    if rep.failed:
        print("%d check(s) FAILED" % rep.failed)
        return 1
    print("all checks passed (tolerance %.0e)" % TOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
