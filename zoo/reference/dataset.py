"""Procedural "shapes" VQA dataset for training and evaluating a small VL-Mamba (issue 6).

Deterministic from a seed. Each image (64x64 RGB) holds 1-4 non-overlapping shapes of distinct
(colour, shape) pairs on a solid or gradient background. Questions have short canonical answers:

  type      question                                                     answer
  color     What color is the star?                                      red
  shape     What shape is the blue object?                               circle
  count     How many shapes are there? / How many stars ...? /           0-4
            How many red shapes ...?
  relation  Is the red circle left or right of the blue star?            left | right
            Is the red circle above or below the blue star?              above | below
  describe  What shapes are there, from left to right?                   red circle, blue star

Held-out split: a scene's composition is the set of its (colour, shape) pairs. Compositions are
hashed into train or test (about 1 in 5 go to test), so no test scene has a composition seen in
training; positions, sizes, colour jitter and backgrounds are drawn afresh as well.

Issue 16 adds a second task set, "mixed": these five types plus three that need 2-D context between
patches (neighbor, edge, count9 up to 9 shapes, on their own crowded scenes); see the section "spatial" below.
The default ("classic") output is unchanged.

Command line (writes LLaVA-style questions.jsonl, gt.jsonl and images/*.png):
  python3 zoo/reference/dataset.py --out DIR --split test --n 50 [--seed 0] [--task classic|mixed]

Runs with Debian's python3-torch 1.13 (CPU) and torch 2.x (CPU or CUDA for batch rendering).
"""

import json
import math
import os
import random
import struct
import zlib

import torch

IMAGE_SIZE = 64
COLORS = {   # name -> nominal RGB; each object jitters every channel by up to +-JITTER
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle", "star", "diamond"]
PLURAL = {s: s + "s" for s in SHAPES}
TYPES = ["color", "shape", "count", "relation", "describe"]
JITTER = 12
R_MIN, R_MAX = 6.0, 11.0       # shape "radius" in pixels
MIN_DX = 5.0                   # every pair of centres differs by this much in x (left-to-right order)
REL_MARGIN = 5.0               # above/below is asked only when |dy| >= this
TEST_EVERY = 5                 # 1 in TEST_EVERY compositions is held out


# ------------------------------------------------------------------------------------------------
# scenes
# ------------------------------------------------------------------------------------------------

def composition_split(pairs):
    """'train' or 'test' for a set of (colour, shape) pairs, by a stable hash."""
    key = "|".join(sorted("%s %s" % p for p in pairs))
    return "test" if zlib.crc32(key.encode()) % TEST_EVERY == 0 else "train"


def _place(rng, n):
    """Centres and radii for n shapes: inside the image, no overlap, distinct x. None on failure."""
    objs = []
    for _ in range(n):
        for _try in range(60):
            r = rng.uniform(R_MIN, R_MAX)
            cx = rng.uniform(r + 1, IMAGE_SIZE - r - 1)
            cy = rng.uniform(r + 1, IMAGE_SIZE - r - 1)
            ok = all(math.hypot(cx - o[0], cy - o[1]) >= r + o[2] + 2 and abs(cx - o[0]) >= MIN_DX
                     for o in objs)
            if ok:
                objs.append((cx, cy, r))
                break
        else:
            return None
    return objs


def sample_scene(rng, split, n=None, min_n=1):
    """One scene of the given split: background and 1-4 objects (dicts)."""
    while True:
        k = n if n is not None else rng.randint(min_n, 4)
        pairs = set()
        while len(pairs) < k:
            pairs.add((rng.choice(COLOR_NAMES), rng.choice(SHAPES)))
        pairs = sorted(pairs)
        if split is not None and composition_split(pairs) != split:
            continue
        rng.shuffle(pairs)
        geo = _place(rng, k)
        if geo is None:
            continue
        objects = []
        for (color, shape), (cx, cy, r) in zip(pairs, geo):
            rgb = [min(255, max(0, c + rng.randint(-JITTER, JITTER))) for c in COLORS[color]]
            rot = rng.uniform(-12, 12) if shape in ("triangle", "star") else 0.0
            objects.append({"color": color, "shape": shape, "cx": cx, "cy": cy, "r": r, "rot": rot, "rgb": rgb})
        # background: dark to mid tones (every shape colour stays visible), solid or a linear gradient
        c0 = [rng.randint(10, 110) for _ in range(3)]
        c1 = [min(120, max(0, c + rng.randint(-45, 45))) for c in c0] if rng.random() < 0.7 else list(c0)
        ang = rng.uniform(0, 2 * math.pi)
        return {"objects": objects, "bg": {"c0": c0, "c1": c1, "dir": [math.cos(ang), math.sin(ang)]}}


# ------------------------------------------------------------------------------------------------
# rendering (batched torch; 4x4 supersampling)
# ------------------------------------------------------------------------------------------------

def _polygons():
    """Unit polygons (angle 0 points up, y grows downwards), padded to 10 vertices: (5, 10, 2)."""
    def ring(n, radius, start=-90.0):
        return [(radius * math.cos(math.radians(start + 360.0 * i / n)),
                 radius * math.sin(math.radians(start + 360.0 * i / n))) for i in range(n)]
    star = []
    for i in range(10):
        rad = 1.15 if i % 2 == 0 else 0.48
        a = math.radians(-90.0 + 36.0 * i)
        star.append((rad * math.cos(a), rad * math.sin(a)))
    polys = {
        "circle": ring(10, 0.9),   # unused: circles are tested analytically
        "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
        "triangle": ring(3, 1.1),
        "star": star,
        "diamond": ring(4, 1.05),
    }
    out = []
    for s in SHAPES:
        p = polys[s]
        out.append(p + [p[-1]] * (10 - len(p)))   # repeated vertices add degenerate edges
    return torch.tensor(out, dtype=torch.float64)


_POLY = _polygons()


def render_batch(scenes, device="cpu", ss=4):
    """Scenes -> uint8 images (B, S, S, 3). Computed in float64 on CPU, float32 on CUDA."""
    dev = torch.device(device)
    dt = torch.float32 if dev.type == "cuda" else torch.float64
    b = len(scenes)
    s = IMAGE_SIZE
    g = s * ss
    coords = (torch.arange(g, dtype=dt, device=dev) + 0.5) / ss                 # sample centres (pixels)
    py, px = torch.meshgrid(coords, coords, indexing="ij")                     # (G, G)
    px, py = px.reshape(1, -1), py.reshape(1, -1)                              # (1, G*G)
    # background
    c0 = torch.tensor([sc["bg"]["c0"] for sc in scenes], dtype=dt, device=dev)   # (B, 3)
    c1 = torch.tensor([sc["bg"]["c1"] for sc in scenes], dtype=dt, device=dev)
    dirs = torch.tensor([sc["bg"]["dir"] for sc in scenes], dtype=dt, device=dev)   # (B, 2)
    t = ((px - s / 2) * dirs[:, :1] + (py - s / 2) * dirs[:, 1:]) / s + 0.5      # (B, G*G)
    t = t.clamp(0, 1)[..., None]
    img = c0[:, None] * (1 - t) + c1[:, None] * t                              # (B, G*G, 3)
    poly = _POLY.to(device=dev, dtype=dt)                                      # (5, 10, 2)
    for slot in range(max((len(sc["objects"]) for sc in scenes), default=0)):
        idx = [i for i, sc in enumerate(scenes) if len(sc["objects"]) > slot]
        if not idx:
            continue
        objs = [scenes[i]["objects"][slot] for i in idx]
        ii = torch.tensor(idx, device=dev)
        kind = torch.tensor([SHAPES.index(o["shape"]) for o in objs], device=dev)
        cx = torch.tensor([o["cx"] for o in objs], dtype=dt, device=dev)[:, None]   # (b, 1)
        cy = torch.tensor([o["cy"] for o in objs], dtype=dt, device=dev)[:, None]
        r = torch.tensor([o["r"] for o in objs], dtype=dt, device=dev)[:, None]
        rot = torch.tensor([math.radians(o["rot"]) for o in objs], dtype=dt, device=dev)[:, None]
        rgb = torch.tensor([o["rgb"] for o in objs], dtype=dt, device=dev)      # (b, 3)
        # local coordinates, rotated by -rot
        dx, dy = (px - cx) / r, (py - cy) / r                                  # (b, G*G)
        u = dx * torch.cos(rot) + dy * torch.sin(rot)
        v = -dx * torch.sin(rot) + dy * torch.cos(rot)
        inside_circle = (u * u + v * v) <= 0.81
        # even-odd crossing test against the padded polygon
        vx, vy = poly[kind][..., 0][..., None], poly[kind][..., 1][..., None]   # (b, 10, 1)
        wx, wy = vx.roll(-1, dims=1), vy.roll(-1, dims=1)
        uu, vv = u[:, None], v[:, None]                                        # (b, 1, G*G)
        crosses = (vy > vv) != (wy > vv)
        denom = torch.where(wy == vy, torch.ones_like(wy), wy - vy)
        xint = vx + (vv - vy) * (wx - vx) / denom
        inside_poly = ((crosses & (uu < xint)).sum(1) % 2) == 1                 # (b, G*G)
        inside = torch.where(kind[:, None] == 0, inside_circle, inside_poly).to(dt)[..., None]
        img[ii] = img[ii] * (1 - inside) + rgb[:, None] * inside
    img = img.reshape(b, s, ss, s, ss, 3).mean(dim=(2, 4))                     # (B, S, S, 3)
    return img.round().clamp(0, 255).to(torch.uint8).cpu()


# ------------------------------------------------------------------------------------------------
# questions
# ------------------------------------------------------------------------------------------------

def describe(scene):
    objs = sorted(scene["objects"], key=lambda o: o["cx"])
    return ", ".join("%s %s" % (o["color"], o["shape"]) for o in objs)


def qa_candidates(scene):
    """Every question of the scene, grouped by type: {type: [(question, answer), ...]}. Count questions
    are split into the forms count_total, count_shape and count_color (all of type "count")."""
    objs = scene["objects"]
    shape_n = {s: sum(o["shape"] == s for o in objs) for s in SHAPES}
    color_n = {c: sum(o["color"] == c for o in objs) for c in COLOR_NAMES}
    out = {t: [] for t in TYPES if t != "count"}
    for o in objs:
        if shape_n[o["shape"]] == 1:
            out["color"].append(("What color is the %s?" % o["shape"], o["color"]))
        if color_n[o["color"]] == 1:
            out["shape"].append(("What shape is the %s object?" % o["color"], o["shape"]))
    out["count_total"] = [("How many shapes are there?", str(len(objs)))]
    out["count_shape"] = [("How many %s are there?" % PLURAL[s], str(shape_n[s])) for s in SHAPES]
    out["count_color"] = [("How many %s shapes are there?" % c, str(color_n[c])) for c in COLOR_NAMES]
    for a in objs:
        for b in objs:
            if a is b:
                continue
            na, nb = "%s %s" % (a["color"], a["shape"]), "%s %s" % (b["color"], b["shape"])
            out["relation"].append(("Is the %s left or right of the %s?" % (na, nb),
                                    "left" if a["cx"] < b["cx"] else "right"))
            if abs(a["cy"] - b["cy"]) >= REL_MARGIN:
                out["relation"].append(("Is the %s above or below the %s?" % (na, nb),
                                        "above" if a["cy"] < b["cy"] else "below"))
    out["describe"] = [("What shapes are there, from left to right?", describe(scene))]
    return out


def applicable(cands, qtype):
    return qtype == "count" or bool(cands[qtype])


def pick_qa(rng, cands, qtype):
    """One (question, answer) of the type. Count questions: total, per shape or per colour, each a third;
    per shape/colour they ask about a present one 70 % of the time (the rest are often 0)."""
    if qtype != "count":
        return rng.choice(cands[qtype])
    form = rng.choice(["count_total", "count_shape", "count_color"])
    items = cands[form]
    present = [qa for qa in items if qa[1] != "0"]
    if form != "count_total" and present and rng.random() < 0.7:
        items = present
    return rng.choice(items)


def test_item(seed, split, i):
    """Question i of a split: its scene, type (cycling through TYPES), question and answer."""
    rng = random.Random("shapes-%d-%s-%d" % (seed, split, i))
    qtype = TYPES[i % len(TYPES)]
    while True:
        scene = sample_scene(rng, split, min_n=2 if qtype == "relation" else 1)
        cands = qa_candidates(scene)
        if applicable(cands, qtype):
            q, a = pick_qa(rng, cands, qtype)
            return scene, qtype, q, a


def train_scene(seed, i, per_scene=6):
    """Training scene i with `per_scene` questions, types drawn uniformly (applicable ones)."""
    rng = random.Random("shapes-%d-train-%d" % (seed, i))
    scene = sample_scene(rng, "train")
    cands = qa_candidates(scene)
    avail = [t for t in TYPES if applicable(cands, t)]
    qas = []
    for _ in range(per_scene):
        t = rng.choice(avail)
        q, a = pick_qa(rng, cands, t)
        qas.append((t, q, a))
    return scene, qas


def all_texts():
    """Every question and answer string the generator can produce (for the tokenizer)."""
    texts = set(["What shapes are there, from left to right?", "How many shapes are there?"])
    texts.update(COLOR_NAMES + SHAPES + ["left", "right", "above", "below"] + [str(k) for k in range(5)])
    for s in SHAPES:
        texts.add("What color is the %s?" % s)
        texts.add("How many %s are there?" % PLURAL[s])
    for c in COLOR_NAMES:
        texts.add("What shape is the %s object?" % c)
        texts.add("How many %s shapes are there?" % c)
    objs = ["%s %s" % (c, s) for c in COLOR_NAMES for s in SHAPES]
    for a in objs:
        for b in objs:
            if a != b:
                texts.add("Is the %s left or right of the %s?" % (a, b))
                texts.add("Is the %s above or below the %s?" % (a, b))
    return sorted(texts)


# ------------------------------------------------------------------------------------------------
# the "spatial" task set (issue 16): question types that need 2-D context between patches
# ------------------------------------------------------------------------------------------------
#
#   type      question                                                  answer
#   neighbor  What is directly to the left of the red circle?           blue star
#             (... to the right of / directly above / directly below)
#   edge      How many shapes touch the top edge?                       0-9
#             (top / bottom / left / right)
#   count9    How many shapes are there?                                1-9
#
# These are asked on their own scenes ("crowded": 1-9 shapes, radius 5 to min(11, 20/sqrt(n)) px, about
# 30 % of them cut off by one image edge). "Directly left of X" is the nearest shape whose centre lies
# within BAND px of X's row on its left; the question is asked only when that is unambiguous (no other
# shape on that side between BAND and BAND_OUT px off the row, and the nearest leads the second by
# NEAR_GAP px). Touching an edge is a fact of construction: a touching shape is cut by the edge by 20-50 %
# of its radius, and every other shape keeps 3 px clear of every edge.
#
# Held-out split: crowded scenes use the same composition hash as above, and in addition every neighbor
# question's triple (reference object, direction, answer object) is hashed into train or test (1 in 5):
# no training scene is ever asked a held-out triple, so test neighbor questions are unseen compositions of
# the question itself. The old five types and their generators are unchanged; `mixed_*` below combine
# both task sets (old questions on old scenes, new questions on crowded scenes).

NEW_TYPES = ["neighbor", "edge", "count9"]
ALL_TYPES = TYPES + NEW_TYPES
N_MAX = 9
EDGES = ["top", "bottom", "left", "right"]
DIRECTIONS = ["left", "right", "above", "below"]
DIR_TEXT = {"left": "to the left of", "right": "to the right of", "above": "directly above", "below": "directly below"}
P_EDGE = 0.35                  # chance that a shape is placed cut by one edge
EDGE_CUT = (0.2, 0.5)          # how far (x r) a touching shape reaches past its edge
EDGE_CLEAR = 3.0               # other shapes: px between their bounding extent and every edge
BAND, BAND_OUT, NEAR_GAP = 5.0, 9.0, 4.0


def _extent(shape, rot, edge):
    """How far (x r) the shape reaches from its centre towards an edge, with its rotation (degrees)."""
    if shape == "circle":
        return 0.9
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    pts = [(u * c - v * s, u * s + v * c) for u, v in _POLY[SHAPES.index(shape)].tolist()]   # image offsets
    return max({"top": -y, "bottom": y, "left": -x, "right": x}[edge] for x, y in pts)


def neighbor_split(ref, direction, ans):
    key = "%s %s|%s|%s %s" % (ref + (direction,) + ans)
    return "test" if zlib.crc32(key.encode()) % TEST_EVERY == 0 else "train"


def sample_scene_spatial(rng, split, n=None):
    """One crowded scene of the given split: background and 1-9 objects, each with `edge` (None or the
    edge it touches)."""
    while True:
        k = n if n is not None else rng.randint(1, N_MAX)
        pairs = set()
        while len(pairs) < k:
            pairs.add((rng.choice(COLOR_NAMES), rng.choice(SHAPES)))
        pairs = sorted(pairs)
        if split is not None and composition_split(pairs) != split:
            continue
        rng.shuffle(pairs)
        rmax = min(R_MAX, 20.0 / math.sqrt(k))
        objects = []
        for color, shape in pairs:
            for _try in range(80):
                r = rng.uniform(5.0, rmax)
                rot = rng.uniform(-12, 12) if shape in ("triangle", "star") else 0.0
                lo, hi = 1.2 * r + EDGE_CLEAR, IMAGE_SIZE - 1.2 * r - EDGE_CLEAR
                cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
                edge = rng.choice(EDGES) if rng.random() < P_EDGE else None
                if edge is not None:
                    d = (_extent(shape, rot, edge) - rng.uniform(*EDGE_CUT)) * r   # centre to edge
                    cx = {"left": d, "right": IMAGE_SIZE - d}.get(edge, cx)
                    cy = {"top": d, "bottom": IMAGE_SIZE - d}.get(edge, cy)
                if all(math.hypot(cx - o["cx"], cy - o["cy"]) >= 1.15 * (r + o["r"]) + 1.0 for o in objects):
                    rgb = [min(255, max(0, c + rng.randint(-JITTER, JITTER))) for c in COLORS[color]]
                    objects.append({"color": color, "shape": shape, "cx": cx, "cy": cy, "r": r, "rot": rot,
                                    "rgb": rgb, "edge": edge})
                    break
            else:
                break
        if len(objects) < k:
            continue
        c0 = [rng.randint(10, 110) for _ in range(3)]
        c1 = [min(120, max(0, c + rng.randint(-45, 45))) for c in c0] if rng.random() < 0.7 else list(c0)
        ang = rng.uniform(0, 2 * math.pi)
        return {"objects": objects, "bg": {"c0": c0, "c1": c1, "dir": [math.cos(ang), math.sin(ang)]}}


def neighbor_of(scene, x, direction):
    """The object directly left/right/above/below x, or None when there is none or it is ambiguous."""
    horiz = direction in ("left", "right")
    sign = -1 if direction in ("left", "above") else 1
    near, ambiguous = [], False
    for o in scene["objects"]:
        if o is x:
            continue
        along = (o["cx"] - x["cx"]) if horiz else (o["cy"] - x["cy"])
        across = abs(o["cy"] - x["cy"]) if horiz else abs(o["cx"] - x["cx"])
        if along * sign <= 0:
            continue
        if across <= BAND:
            near.append((abs(along), o))
        elif across < BAND_OUT:
            ambiguous = True
    if ambiguous or not near:
        return None
    near.sort(key=lambda t: t[0])
    if len(near) > 1 and near[1][0] - near[0][0] < NEAR_GAP:
        return None
    return near[0][1]


def qa_candidates_spatial(scene, split):
    """{type: [(question, answer), ...]} for the new types; neighbor questions only of `split`'s triples."""
    objs = scene["objects"]
    out = {t: [] for t in NEW_TYPES}
    for x in objs:
        for d in DIRECTIONS:
            y = neighbor_of(scene, x, d)
            if y is None:
                continue
            if split is not None and neighbor_split((x["color"], x["shape"]), d, (y["color"], y["shape"])) != split:
                continue
            out["neighbor"].append(("What is %s the %s %s?" % (DIR_TEXT[d], x["color"], x["shape"]),
                                    "%s %s" % (y["color"], y["shape"])))
    for e in EDGES:
        out["edge"].append(("How many shapes touch the %s edge?" % e, str(sum(o["edge"] == e for o in objs))))
    out["count9"].append(("How many shapes are there?", str(len(objs))))
    return out


def pick_spatial(rng, cands, qtype):
    """One (question, answer) of a new type; edge questions ask about an edge that some shape touches 70 %
    of the time (the rest are often 0)."""
    items = cands[qtype]
    touched = [qa for qa in items if qa[1] != "0"]
    if qtype == "edge" and touched and rng.random() < 0.7:
        items = touched
    return rng.choice(items)


def test_item_spatial(seed, split, i):
    """Question i of a split of the new types (cycling through NEW_TYPES)."""
    rng = random.Random("shapes2-%d-%s-%d" % (seed, split, i))
    qtype = NEW_TYPES[i % len(NEW_TYPES)]
    while True:
        scene = sample_scene_spatial(rng, split, n=rng.randint(2, N_MAX) if qtype == "neighbor" else None)
        cands = qa_candidates_spatial(scene, split)
        if cands[qtype]:
            q, a = pick_spatial(rng, cands, qtype)
            return scene, qtype, q, a


def train_scene_spatial(seed, i, per_scene=6):
    rng = random.Random("shapes2-%d-train-%d" % (seed, i))
    scene = sample_scene_spatial(rng, "train")
    cands = qa_candidates_spatial(scene, "train")
    avail = [t for t in NEW_TYPES if cands[t]]
    return scene, [(t,) + pick_spatial(rng, cands, t) for t in (rng.choice(avail) for _ in range(per_scene))]


def mixed_test_item(seed, split, i):
    """Question i of the mixed test split, types cycling through ALL_TYPES. An old-type question is exactly
    the old split's question of that type with the same rank (test_item), so its numbers stay comparable."""
    k, m = i % len(ALL_TYPES), i // len(ALL_TYPES)
    if k < len(TYPES):
        return test_item(seed, split, m * len(TYPES) + k)
    return test_item_spatial(seed, split, m * len(NEW_TYPES) + (k - len(TYPES)))


def mixed_train_scene(seed, i, per_scene=6):
    """Training scene i of the mixed set: even i = old scene i/2 (train_scene), odd = crowded scene."""
    return train_scene(seed, i // 2, per_scene) if i % 2 == 0 else train_scene_spatial(seed, i // 2, per_scene)


def all_texts_spatial():
    """all_texts() plus every string of the new types."""
    texts = set(all_texts())
    texts.update(str(k) for k in range(N_MAX + 1))
    for e in EDGES:
        texts.add("How many shapes touch the %s edge?" % e)
    for c in COLOR_NAMES:
        for s in SHAPES:
            texts.add("%s %s" % (c, s))
            for d in DIRECTIONS:
                texts.add("What is %s the %s %s?" % (DIR_TEXT[d], c, s))
    return sorted(texts)


TASKS = {   # task set -> (types, test item, train scene, tokenizer texts)
    "classic": (TYPES, test_item, train_scene, all_texts),
    "mixed": (ALL_TYPES, mixed_test_item, mixed_train_scene, all_texts_spatial),
}


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------

def write_png(path, img):
    """uint8 (H, W, 3) -> PNG, with PIL when present, else a plain zlib writer."""
    try:
        from PIL import Image
        Image.fromarray(img.numpy()).save(path, optimize=True)
        return
    except ImportError:
        pass
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + bytes(img[y].reshape(-1).tolist()) for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_split(out, split, n, seed=0, task="classic"):
    """Writes out/questions.jsonl, out/gt.jsonl and out/images/<split>_<i>.png for n questions."""
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    items = [TASKS[task][1](seed, split, i) for i in range(n)]
    imgs = []
    for k in range(0, n, 64):
        imgs.append(render_batch([it[0] for it in items[k:k + 64]]))
    imgs = torch.cat(imgs) if imgs else torch.zeros(0, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8)
    with open(os.path.join(out, "questions.jsonl"), "w") as fq, open(os.path.join(out, "gt.jsonl"), "w") as fg:
        for i, (scene, qtype, q, a) in enumerate(items):
            name = "%s_%05d.png" % (split, i)
            write_png(os.path.join(out, "images", name), imgs[i])
            qid = "%s_%05d" % (split, i)
            fq.write(json.dumps({"question_id": qid, "image": name, "text": q}) + "\n")
            fg.write(json.dumps({"question_id": qid, "answer": a, "type": qtype}) + "\n")
    return items, imgs


def _main():
    import argparse
    ap = argparse.ArgumentParser(description="write a split of the procedural shapes VQA dataset")
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="test", choices=["train", "test"])
    ap.add_argument("--n", type=int, default=50, help="number of questions (one image each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", default="classic", choices=sorted(TASKS),
                    help="classic: the five old types; mixed: those and the spatial types, cycling (issue 16)")
    a = ap.parse_args()
    items, _ = write_split(a.out, a.split, a.n, a.seed, a.task)
    counts = {t: sum(it[1] == t for it in items) for t in TASKS[a.task][0]}
    print("wrote %d questions to %s: %s" % (len(items), a.out, counts))


if __name__ == "__main__":
    _main()
