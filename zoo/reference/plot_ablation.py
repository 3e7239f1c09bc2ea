"""Learning curves of the concurrent ablation (issue 16) as a small PNG, drawn with PIL only.

Reads the train reports (reports/<variant>_s<seed>.json, as in ablation_parallel.py's results.tar.gz) and
plots teacher-forced exact match on the held-out learning-curve questions against the training step: the
mean over seeds per variant (line) and each seed (thin line), one panel for all eight question types and
one for the three spatial types (neighbor, edge, count9). A seed whose last check scores 0 after a non-zero one
(a run whose loss went NaN) is drawn dotted and left out of its variant's mean, and the legend says so.

  python3 zoo/reference/plot_ablation.py REPORTS_DIR docs/ablation-curves.png
"""

import json
import os
import sys

from PIL import Image, ImageDraw, ImageFont

VARIANTS = ["mlp", "vss_mlp_bsm", "vss_mlp_csm", "vss_l2_bsm", "vss_l2_csm"]
LABEL = {"mlp": "MLP", "vss_mlp_bsm": "VSS-MLP/BSM", "vss_mlp_csm": "VSS-MLP/CSM", "vss_l2_bsm": "VSS-L2/BSM",
         "vss_l2_csm": "VSS-L2/CSM"}
COLOR = {"mlp": (90, 90, 90), "vss_mlp_bsm": (31, 119, 180), "vss_mlp_csm": (120, 180, 230),
         "vss_l2_bsm": (214, 39, 40), "vss_l2_csm": (255, 152, 120)}
SPATIAL = ["neighbor", "edge", "count9"]


def curves(reports_dir):
    """{variant: {seed: [(step, all, spatial)]}}"""
    out = {}
    for f in sorted(os.listdir(reports_dir)):
        if not f.endswith(".json"):
            continue
        name, seed = f[:-5].rsplit("_s", 1)
        hist = json.load(open(os.path.join(reports_dir, f)))["history"]
        pts = [(h["step"], h["tf_acc"]["all"], sum(h["tf_acc"][t] for t in SPATIAL) / len(SPATIAL)) for h in hist]
        out.setdefault(name, {})[int(seed)] = pts
    return out


def diverged(pts):
    return pts[-1][1] == 0.0 and max(p[1] for p in pts) > 0.0


def draw_panel(d, box, data, idx, title, font, max_step):
    x0, y0, x1, y1 = box
    d.rectangle(box, outline=(0, 0, 0))
    d.text((x0, y0 - 16), title, fill=(0, 0, 0), font=font)

    def px(step, acc):
        return x0 + (x1 - x0) * step / max_step, y1 - (y1 - y0) * acc / 100.0
    for acc in range(0, 101, 20):
        _, y = px(0, acc)
        d.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        d.text((x0 - 24, y - 6), "%d" % acc, fill=(0, 0, 0), font=font)
    step_tick = max(100, int(round(max_step / 5 / 100.0)) * 100)
    for s in range(0, max_step + 1, step_tick):
        x, _ = px(s, 0)
        d.line([(x, y1), (x, y1 + 4)], fill=(0, 0, 0))
        d.text((x - 10, y1 + 6), str(s), fill=(0, 0, 0), font=font)
    d.text(((x0 + x1) // 2 - 15, y1 + 20), "step", fill=(0, 0, 0), font=font)
    for v in VARIANTS:
        if v not in data:
            continue
        light = tuple(int(c + (255 - c) * 0.55) for c in COLOR[v])
        for pts in data[v].values():
            if diverged(pts):
                for a, b in zip(pts, pts[1:]):   # dotted
                    for k in range(0, 20, 2):
                        p0 = [a[j] + (b[j] - a[j]) * k / 20.0 for j in range(3)]
                        p1 = [a[j] + (b[j] - a[j]) * (k + 1) / 20.0 for j in range(3)]
                        d.line([px(p0[0], p0[idx]), px(p1[0], p1[idx])], fill=COLOR[v], width=1)
            else:
                d.line([px(p[0], p[idx]) for p in pts], fill=light, width=1)
        seeds = {k: pts for k, pts in data[v].items() if not diverged(pts)}
        if not seeds:
            continue
        steps = sorted(set.intersection(*[set(p[0] for p in pts) for pts in seeds.values()]))
        mean = [(s, sum(dict((p[0], p[idx]) for p in pts)[s] for pts in seeds.values()) / len(seeds)) for s in steps]
        d.line([px(s, m) for s, m in mean], fill=COLOR[v], width=3)


def main():
    reports_dir, png = sys.argv[1], sys.argv[2]
    data = curves(reports_dir)
    max_step = max(p[0] for seeds in data.values() for pts in seeds.values() for p in pts)
    w, h = 900, 372
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    d.text((40, 6), "Teacher-forced exact match (%) on held-out questions; thick: mean over seeds, thin: each seed",
           fill=(0, 0, 0), font=font)
    draw_panel(d, (40, 45, 410, 300), data, 1, "all 8 question types", font, max_step)
    draw_panel(d, (470, 45, 840, 300), data, 2, "spatial types (neighbor, edge, count9)", font, max_step)
    ly = 345
    lx = 40
    for v in VARIANTS:
        if v in data:
            d.line([(lx, ly + 6), (lx + 24, ly + 6)], fill=COLOR[v], width=3)
            bad = sum(diverged(pts) for pts in data[v].values())
            d.text((lx + 30, ly - (6 if bad else 0)), "%s (%d seeds)" % (LABEL[v], len(data[v])), fill=(0, 0, 0), font=font)
            if bad:
                d.text((lx + 30, ly + 6), "%d diverged: dotted" % bad, fill=(0, 0, 0), font=font)
            lx += 170
    img.save(png, optimize=True)
    print("wrote %s (%d bytes)" % (png, os.path.getsize(png)))


if __name__ == "__main__":
    main()
