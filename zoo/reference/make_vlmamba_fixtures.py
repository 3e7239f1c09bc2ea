"""Whole tiny VL-Mamba models (SPEC §8.2 directories) with goldens from the PyTorch reference.

Writes under tests/data/vlmamba/:
  tiny-siglip-vssl2-bsm/             vision_tower. (tiny SigLIP hub weights, F32) + mm_projector. (new
                                     VSS-L2 BSM connector 48->48) + language_model. (tiny-untied Mamba, F32)
  tiny-siglip-vssl2-bsm-components/  config.json with vision_tower_path / language_model_path and a
                                     model.safetensors holding only mm_projector.* (same weights)
  tiny-clip-mlp/                     tiny CLIP tower + MLP connector 48->48 + tiny-untied Mamba; here the
                                     copied tower is stored as BF16 and the LM as F16 (SPEC §8.1: any tensor
                                     may be F32/BF16/F16), which keeps the data small and covers those loads
  tiny-clip-mlp-components/          component paths + mm_projector.* only (F32 originals)
Each directory gets golden.safetensors (float64 compute, saved float32 / I64):
  pixel_values (1,3,S,S), input_ids (L_text), features (L_v, C_v) = tower hidden_states[-2] (CLIP
  without CLS), prefix (L_v, d) = connector output, logits (L_text, V) for the text positions only,
  greedy_ids (16) greedy continuation (no id 0 or 1, top-2 margin > MARGIN_MIN at every step).

    python3 zoo/reference/make_vlmamba_fixtures.py [--data tests/data]
"""

import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vlmamba_ref as ref  # noqa: E402
from make_connector_fixtures import connector_config, draw_connector, gen  # noqa: E402

PROMPT_LEN = 8
N_NEW = 16
MARGIN_MIN = 1e-2      # SPEC asks > 1e-3; tiny models allow a stricter margin
MIN_DISTINCT = 4       # a continuation stuck on one token would hide decode-state bugs
MAX_TRIES = 200

MODELS = {
    "tiny-siglip-vssl2-bsm": dict(
        tower="siglip", connector=("vss_l2", "bsm", 8), preset="siglip-so400m-384",
        tower_dtype=torch.float32, lm_dtype=torch.float32, seed=5005),
    "tiny-clip-mlp": dict(
        tower="clip", connector=("mlp", None, None), preset="clip-vit-l-336",
        tower_dtype=torch.bfloat16, lm_dtype=torch.float16, seed=6006),
}
LM_DIR = ("mamba", "tiny-untied", "hf-f32")


def write_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def pick_prompt(model, pixel_values, vocab, seed):
    """Draw prompts until the greedy continuation is clean: no id 0 (EOS) or 1 (padding), clear
    top-2 margins at every step, at least MIN_DISTINCT different ids."""
    for t in range(MAX_TRIES):
        ids = torch.randint(2, vocab, (PROMPT_LEN,), generator=gen("prompt", seed, t)).tolist()
        g = model.greedy(pixel_values, ids, N_NEW, mode="recurrent")
        if min(g["ids"]) < 2 or min(g["margins"]) <= MARGIN_MIN or len(set(g["ids"])) < MIN_DISTINCT:
            continue
        return ids, g, t
    raise RuntimeError("no clean greedy prompt in %d tries" % MAX_TRIES)


def golden(model_dir, seed, log):
    """Golden tensors of one model directory, plus checks printed to the log."""
    m64 = ref.VLMamba(model_dir, torch.float64)
    s = m64.tower.image_size
    pv = torch.randn((1, 3, s, s), generator=gen("pixels", seed), dtype=torch.float32)
    ids, g, tries = pick_prompt(m64, pv, m64.lm.vocab, seed)
    out = m64.forward(pv, ids)
    # the same continuation by full re-forward (independent of the recurrent decode)
    full = m64.greedy(pv, ids, N_NEW, mode="full")
    assert full["ids"] == g["ids"], "recurrent and full greedy disagree"
    log("  greedy recurrent == full re-forward: ids equal, logits rel diff %.1e" % rel(g["logits"], full["logits"]))
    # how much the image moves the text logits (0 would mean the prefix is not exercised)
    pv2 = torch.randn((1, 3, s, s), generator=gen("pixels2", seed), dtype=torch.float32)
    other = m64.forward(pv2, ids)["logits"]
    log("  image effect on text logits: rel change %.3f (other image)" % rel(other, out["logits"]))
    # what a float32 runtime should reach
    m32 = ref.VLMamba(model_dir, torch.float32)
    o32 = m32.forward(pv, ids)
    log("  float32 vs float64: features %.1e prefix %.1e logits %.1e" % (
        rel(o32["features"], out["features"]), rel(o32["prefix"], out["prefix"]), rel(o32["logits"], out["logits"])))
    log("  prompt try %d, ids %s, greedy %s, min margin %.4f" % (tries, ids, g["ids"], min(g["margins"])))
    log("  rms: features %.3f prefix %.3f text embeddings %.3f logits std %.3f" % (
        float(out["features"].pow(2).mean().sqrt()), float(out["prefix"].pow(2).mean().sqrt()),
        float(m64.lm.embed(ids).pow(2).mean().sqrt()), float(out["logits"].std())))
    tensors = {
        "pixel_values": pv,
        "input_ids": torch.tensor(ids, dtype=torch.int64),
        "features": out["features"][0].float(),                            # (L_v, C_v)
        "prefix": out["prefix"].float(),                                   # (L_v, d)
        "logits": out["logits"].float(),                                   # (L_text, V)
        "greedy_ids": torch.tensor(g["ids"], dtype=torch.int64),
    }
    info = {"reference": "zoo/reference/vlmamba_ref.py, CPU float64, torch %s" % torch.__version__,
            "pixel_seed": str(seed), "prompt_try": str(tries), "min_top2_margin": "%.6g" % min(g["margins"]),
            "greedy": "recurrent decode; equals full re-forward"}
    ref.save_safetensors(tensors, os.path.join(model_dir, "golden.safetensors"),
                         {"info": json.dumps(info, sort_keys=True)})
    return tensors


def make_model(data, name, spec, log):
    tower_dir = os.path.join(data, "vision", spec["tower"], "hub")
    lm_dir = os.path.join(data, *LM_DIR)
    vcfg = ref.load_config(tower_dir)
    tcfg = ref.load_config(lm_dir)
    c_v = int(vcfg["hidden_size"])
    d = int(tcfg["hidden_size"])
    ctype, scan, d_state = spec["connector"]
    conn = draw_connector(name, ctype, scan, d_state, c_v, d)
    ccfg = connector_config(ctype, scan, d_state, (0, 0), c_v, d)
    for k in ("grid", "vision_width", "lm_width"):   # not part of the §8.2 connector_config
        ccfg.pop(k)
    common = {"image_preprocess": {"preset": spec["preset"], "resize": "pad"},
              "feature_layer": -2, "prompt_template": "plain"}

    # single-file model directory
    out_dir = os.path.join(data, "vlmamba", name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    cfg = {"model_type": "vlmamba", "vision_config": vcfg, "connector_config": ccfg, "text_config": tcfg}
    cfg.update(common)
    write_json(cfg, os.path.join(out_dir, "config.json"))
    tensors = {}
    for k, v in ref.load_weights(tower_dir).items():
        tensors["vision_tower." + k] = v.to(spec["tower_dtype"])
    tensors.update(conn)
    for k, v in ref.load_weights(lm_dir).items():
        tensors["language_model." + k] = v.to(spec["lm_dtype"])
    ref.save_safetensors(tensors, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})

    # the same model assembled from component directories
    comp_dir = out_dir + "-components"
    shutil.rmtree(comp_dir, ignore_errors=True)
    os.makedirs(comp_dir)
    rel_from = lambda p: os.path.relpath(p, comp_dir).replace(os.sep, "/")
    ccfg_full = {"model_type": "vlmamba", "vision_tower_path": rel_from(tower_dir),
                 "language_model_path": rel_from(lm_dir), "connector_config": ccfg}
    ccfg_full.update(common)
    write_json(ccfg_full, os.path.join(comp_dir, "config.json"))
    ref.save_safetensors(conn, os.path.join(comp_dir, "model.safetensors"), {"format": "pt"})

    log("%s: connector %s, tower %s, LM %s" % (name, json.dumps(ccfg), str(spec["tower_dtype"]).replace("torch.", ""),
                                            str(spec["lm_dtype"]).replace("torch.", "")))
    g_full = golden(out_dir, spec["seed"], log)
    log("%s-components:" % name)
    g_comp = golden(comp_dir, spec["seed"], log)
    same_ids = g_full["input_ids"].tolist() == g_comp["input_ids"].tolist()
    log("  components vs single file: features %.1e prefix %.1e logits %.1e (same prompt: %s)" % (
        rel(g_comp["features"], g_full["features"]), rel(g_comp["prefix"], g_full["prefix"]),
        rel(g_comp["logits"], g_full["logits"]) if same_ids else float("nan"), same_ids))
    if spec["tower_dtype"] == torch.float32 and spec["lm_dtype"] == torch.float32:
        assert same_ids and torch.equal(g_comp["logits"], g_full["logits"]), "components differ from single file"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(here, "..", "..", "tests", "data"))
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    data = os.path.normpath(a.data)
    for name, spec in MODELS.items():
        make_model(data, name, spec, lambda s: print(s, flush=True))
    total = 0
    for dirpath, _, files in os.walk(os.path.join(data, "vlmamba")):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            total += os.path.getsize(p)
            print("%8d  %s" % (os.path.getsize(p), os.path.relpath(p, data)))
    print("%8d  total" % total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
