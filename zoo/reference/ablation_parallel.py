"""The paper's connector ablation, five variants x several seeds, trained side by side on one GPU (issue 16).

One call does everything, inside a wall-clock budget:
  1. data: train.py --prepare-data builds the tokenizer, the training rows and images (task set "mixed",
     data seed 0) once; dataset.write_split writes the held-out test questions as PNG + JSONL.
  2. training: one train.py process per (variant, seed), all at once on the same GPU, all on that data.
     They meet at a barrier, each measures its ms/step over steps 10..50 with all the others running, and
     this script sets one total step count for all of them (the slowest one must finish by --train-until-s),
     so every run takes the same number of steps on the same batches (same seed -> same batch order).
  3. evaluation of each exported model as soon as its training ends, on the CPUs that training leaves free:
     the C++ `vlmamba eval` on all held-out questions, and the PyTorch reference (train.py --eval-only,
     vlmamba_ref float32 greedy) shard by shard, shards in the same order for every model, until the
     budget is spent.
  4. summary.json / summary.md (per run and per variant: mean and std over seeds, C++ vs reference) and
     results.tar.gz (reports, logs, answers) in --out.

  python3 zoo/reference/ablation_parallel.py --out OUT --bin DIR/vlmamba [--budget-s 520] [--train-until-s 380]
  python3 zoo/reference/ablation_parallel.py --bench-lone --out OUT     # lone ms/step of each variant
  python3 zoo/reference/ablation_parallel.py --summarize OUT            # redo summary.* from OUT's files

Plot the learning curves with zoo/reference/plot_ablation.py.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = [("mlp", "bsm"), ("vss_mlp", "bsm"), ("vss_mlp", "csm"), ("vss_l2", "bsm"), ("vss_l2", "csm")]
LABEL = {"mlp": "MLP", "vss_mlp_bsm": "VSS-MLP / BSM", "vss_mlp_csm": "VSS-MLP / CSM", "vss_l2_bsm": "VSS-L2 / BSM",
         "vss_l2_csm": "VSS-L2 / CSM"}


def vname(conn, scan):
    return "mlp" if conn == "mlp" else "%s_%s" % (conn, scan)


def log(*a):
    print("[%6.1fs]" % (time.time() - T0), *a, flush=True)


T0 = time.time()


# ------------------------------------------------------------------------------------------------
# lone step rate (no other process on the GPU)
# ------------------------------------------------------------------------------------------------

def bench_lone(a):
    """ms/step of each variant alone, batch a.batch, real data shapes (2,000 scenes), steps 10..10+a.bench_steps."""
    sys.path.insert(0, HERE)
    import torch
    import train
    import fused_scan
    train.TASK["name"] = "mixed"
    dev = torch.device("cuda")
    os.makedirs(a.out, exist_ok=True)
    res = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    t = time.time()
    res["fused_scan_check_max_rel_err"] = fused_scan.check()
    log("fused scan vs scan_batched (float32 vs float64, values and grads): %.2e (%.1fs)" % (
        res["fused_scan_check_max_rel_err"], time.time() - t))
    enc, _ = train.make_tokenizer(a.out)
    imgs, ids, mask, scene, _ = train.build_train(2000, enc, dev, 0)
    res["text_len"] = int(ids.shape[1])
    for conn, scan in VARIANTS:
        cfg = train.make_config((enc.size + 15) // 16 * 16, connector=conn, scan=scan)
        torch.manual_seed(0)
        model = train.ShapesVLMamba(cfg, 0).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        torch.cuda.reset_peak_memory_stats()
        for step in range(10 + a.bench_steps):
            if step == 10:
                torch.cuda.synchronize()
                t0 = time.time()
            idx = torch.randint(0, ids.shape[0], (a.batch,), device=dev)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                lg = model(train.pixels(imgs[scene[idx]]), ids[idx])
            b_ids, b_mask = ids[idx], mask[idx]
            tgt = torch.where(b_mask[:, 1:], b_ids[:, 1:], torch.full_like(b_ids[:, 1:], -100))
            loss = torch.nn.functional.cross_entropy(lg[:, :-1].float().reshape(-1, lg.shape[-1]), tgt.reshape(-1),
                                                     ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        torch.cuda.synchronize()
        ms = 1e3 * (time.time() - t0) / a.bench_steps
        name = vname(conn, scan)
        res[name] = {"ms_per_step": round(ms, 2), "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2),
                     "params": sum(p.numel() for p in model.parameters())}
        log("lone %-12s %.1f ms/step (batch %d), peak %.1f GiB" % (name, ms, a.batch, res[name]["peak_gpu_gib"]))
        del model, opt
        torch.cuda.empty_cache()
    res["batch"], res["steps_timed"] = a.batch, a.bench_steps
    with open(os.path.join(a.out, "lone.json"), "w") as f:
        json.dump(res, f, indent=1)


# ------------------------------------------------------------------------------------------------
# the concurrent ablation
# ------------------------------------------------------------------------------------------------

def run(a):
    work, out = a.work, a.out
    for d in (work, out):
        os.makedirs(d, exist_ok=True)
    sync = os.path.join(work, "sync")
    shutil.rmtree(sync, ignore_errors=True)
    os.makedirs(sync)
    for sub in ("logs", "reports", "cpp", "ref"):
        os.makedirs(os.path.join(work, sub), exist_ok=True)
    py = a.python
    end_all = T0 + a.budget_s
    train_end = T0 + a.train_until_s
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    common = ["--task", "mixed", "--batch", str(a.batch), "--lr", str(a.lr)] + (["--small"] if a.small else [])
    if a.device != "cuda":
        common += ["--device", a.device]

    # 1. data (GPU rendering) and the held-out PNG split (CPU), side by side
    data = os.path.join(work, "data", "data.pt")
    testdir = os.path.join(work, "test")
    p_data = subprocess.Popen([py, os.path.join(HERE, "train.py"), "--prepare-data", data, "--scenes", str(a.scenes),
                               "--test", str(a.tf_test), "--seed", "0"] + common,
                              stdout=open(os.path.join(work, "logs", "prepare.log"), "w"), stderr=subprocess.STDOUT, env=env)
    p_test = subprocess.Popen([py, os.path.join(HERE, "dataset.py"), "--out", testdir, "--split", "test", "--n",
                               str(a.test), "--task", "mixed", "--seed", "0"],
                              stdout=open(os.path.join(work, "logs", "testset.log"), "w"), stderr=subprocess.STDOUT, env=env)
    if p_data.wait() != 0:
        raise SystemExit("prepare failed: " + open(os.path.join(work, "logs", "prepare.log")).read()[-3000:])
    log("data prepared")

    # 2. all runs at once
    runs = {}
    for conn, scan in VARIANTS:
        if a.variants and vname(conn, scan) not in a.variants.split(","):
            continue
        for seed in [int(s) for s in a.seeds.split(",")]:
            name = "%s_s%d" % (vname(conn, scan), seed)
            cmd = [py, os.path.join(HERE, "train.py"), "--data", data, "--out", os.path.join(work, "models", name),
                   "--report", os.path.join(work, "reports", name + ".json"), "--connector", conn, "--scan", scan,
                   "--seed", str(seed), "--sync-dir", sync, "--name", name, "--deadline", "%.1f" % (train_end + 15),
                   "--no-eval", "--eval-every", str(a.eval_every), "--tf-test", str(a.tf_test),
                   "--rate-steps", str(a.rate_steps)] + common
            runs[name] = {"cmd": cmd, "proc": subprocess.Popen(cmd, stdout=open(os.path.join(work, "logs", name + ".log"), "w"),
                                                               stderr=subprocess.STDOUT, env=env), "t_start": time.time()}
    log("started %d runs" % len(runs))
    coord = {"runs": sorted(runs), "batch": a.batch}

    def alive():
        return [n for n, r in runs.items() if r["proc"].poll() is None]

    def wait_files(suffix, timeout):
        t = time.time()
        while time.time() - t < timeout:
            live = alive()
            if all(os.path.exists(os.path.join(sync, n + suffix)) for n in live):
                return
            time.sleep(0.1)

    wait_files(".ready", a.ready_timeout)
    coord["ready"] = {n: os.path.exists(os.path.join(sync, n + ".ready")) for n in runs}
    coord["t_go"] = round(time.time() - T0, 1)
    open(os.path.join(sync, "go"), "w").write("1")
    log("go (%d ready, %d alive)" % (sum(coord["ready"].values()), len(alive())))
    wait_files(".rate", 240)
    rates = {}
    for n in runs:
        p = os.path.join(sync, n + ".rate")
        if os.path.exists(p):
            rates[n] = float(open(p).read())
    slowest = max(rates.values()) if rates else 1000.0
    total = max(a.rate_steps + 1, int((train_end - time.time()) / (slowest / 1e3)) + a.rate_steps)
    if a.max_total:
        total = min(total, a.max_total)
    total = max(total // 10 * 10, a.rate_steps + 1)
    coord.update(rates_ms=rates, total_steps=total, t_total=round(time.time() - T0, 1))
    open(os.path.join(sync, "total"), "w").write(str(total))
    log("total %d steps for every run (slowest %.1f ms/step); rates %s" % (total, slowest, json.dumps(rates)))
    p_test.wait()

    # 3. evaluation as runs finish
    qfile = os.path.join(testdir, "questions.jsonl")
    qlines = [l for l in open(qfile) if l.strip()]
    shard_n = a.ref_shard
    shards = []
    for k in range(0, len(qlines), shard_n):
        sq = os.path.join(work, "test", "q.%03d.jsonl" % (k // shard_n))
        with open(sq, "w") as f:
            f.writelines(qlines[k:k + shard_n])
        shards.append(sq)
    done_train, jobs, running, finished = set(), [], [], {}
    ncpu = os.cpu_count() or 2
    lib_env = dict(env)
    if a.libs:
        lib_env["LD_LIBRARY_PATH"] = a.libs + ":" + env.get("LD_LIBRARY_PATH", "")
    cpp_cmd = ([os.path.join(a.libs, "ld-linux-x86-64.so.2"), "--library-path", lib_env["LD_LIBRARY_PATH"], a.bin]
               if a.libs and os.path.exists(os.path.join(a.libs, "ld-linux-x86-64.so.2")) else [a.bin])
    while True:
        now = time.time()
        for n, r in runs.items():
            if n not in done_train and r["proc"].poll() is not None:
                done_train.add(n)
                r["rc"], r["t_end"] = r["proc"].returncode, round(now - T0, 1)
                log("run %s exited %d" % (n, r["rc"]))
                mdir = os.path.join(work, "models", n)
                if r["rc"] == 0 and os.path.exists(os.path.join(mdir, "model.safetensors")):
                    if a.bin:
                        jobs.append((0, 0, "cpp", n, None))
                    for i, sq in enumerate(shards):
                        jobs.append((1, i, "ref", n, sq))
                    jobs.sort(key=lambda j: (j[0], j[1]))
        running = [j for j in running if j["proc"].poll() is None or finished.setdefault(j["key"], j["proc"].returncode) is None]
        n_train = len(alive())
        slots = max(1, ncpu - n_train - 1) - len(running)
        while slots > 0 and jobs:
            pri, i, kind, n, sq = jobs[0]
            if kind == "ref" and now + a.ref_job_s > end_all:
                jobs = [j for j in jobs if j[2] != "ref"]
                log("budget: no more reference shards")
                continue
            jobs.pop(0)
            mdir = os.path.join(work, "models", n)
            if kind == "cpp":
                cmd = cpp_cmd + ["eval", "-m", mdir, "--questions", qfile, "--image-folder",
                                 os.path.join(testdir, "images"), "-o", os.path.join(work, "cpp", n + ".jsonl"), "-n", "24"]   # as the reference
            else:
                cmd = [py, os.path.join(HERE, "train.py"), "--eval-only", "-m", mdir, "--questions", sq, "--gt",
                       os.path.join(testdir, "gt.jsonl"), "--images", os.path.join(testdir, "images"), "--procs", "1",
                       "--answers-out", os.path.join(work, "ref", "%s.%03d.jsonl" % (n, i))]
            lg = open(os.path.join(work, "logs", "eval_%s_%s_%d.log" % (kind, n, i)), "w")
            running.append({"key": (kind, n, i), "proc": subprocess.Popen(cmd, stdout=lg, stderr=subprocess.STDOUT,
                                                                          env=lib_env if kind == "cpp" else env)})
            slots -= 1
        if len(done_train) == len(runs) and not jobs and not running:
            break
        if now > end_all:
            log("budget spent: stopping %d jobs, %d runs" % (len(running), len(alive())))
            for j in running:
                j["proc"].kill()
            for n in alive():
                runs[n]["proc"].kill()
            break
        time.sleep(0.2)
    coord["train"] = {n: {"rc": r.get("rc"), "t_end": r.get("t_end")} for n, r in runs.items()}
    coord["eval_jobs_finished"] = {"%s %s %d" % k: rc for k, rc in finished.items()}
    coord["wall_s"] = round(time.time() - T0, 1)
    with open(os.path.join(work, "coordinator.json"), "w") as f:
        json.dump(coord, f, indent=1)
    shutil.copy(os.path.join(testdir, "gt.jsonl"), os.path.join(work, "gt.jsonl"))
    summarize(work, out)
    with tarfile.open(os.path.join(out, "results.tar.gz"), "w:gz") as tf:
        for sub in ("reports", "logs", "cpp", "ref"):
            tf.add(os.path.join(work, sub), arcname=sub)
        for f in ("coordinator.json", "gt.jsonl"):
            tf.add(os.path.join(work, f), arcname=f)
        tf.add(os.path.join(testdir, "questions.jsonl"), arcname="questions.jsonl")
    log("done")


# ------------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------------

def _acc(ans, gt, qids, types):
    res = {}
    for t in types + ["overall"]:
        sel = [q for q in qids if t == "overall" or gt[q]["type"] == t]
        if sel:
            ok = sum(ans[q].strip().lower() == gt[q]["answer"].strip().lower() for q in sel)
            res[t] = {"correct": ok, "total": len(sel), "accuracy": 100.0 * ok / len(sel)}
    return res


def _mean_std(xs):
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, s


def summarize(work, out):
    """work: a directory with reports/, cpp/, ref/, gt.jsonl, coordinator.json (or an unpacked results.tar.gz)."""
    sys.path.insert(0, HERE)
    import dataset as ds
    gt = {}
    for line in open(os.path.join(work, "gt.jsonl")):
        g = json.loads(line)
        gt[g["question_id"]] = g
    types = [t for t in ds.ALL_TYPES if any(g["type"] == t for g in gt.values())]
    coord = json.load(open(os.path.join(work, "coordinator.json"))) if os.path.exists(os.path.join(work, "coordinator.json")) else {}
    runs = {}
    for f in sorted(os.listdir(os.path.join(work, "reports"))):
        n = f[:-5]
        rep = json.load(open(os.path.join(work, "reports", f)))
        r = {"steps": rep["steps"], "train_seconds": rep["train_seconds"], "batch": rep["batch"],
             "sync_ms_per_step": rep.get("sync_ms_per_step"), "params": rep["params"],
             "connector_params": rep["connector_params"], "stopped_early": rep.get("stopped_early"),
             "peak_gpu_gib": rep.get("peak_gpu_gib"), "history": rep["history"]}
        r["mean_ms_per_step"] = 1e3 * rep["train_seconds"] / max(1, rep["steps"])
        cpp_f = os.path.join(work, "cpp", n + ".jsonl")
        cpp = {}
        if os.path.exists(cpp_f):
            for line in open(cpp_f):
                j = json.loads(line)
                cpp[j["question_id"]] = j["text"]
        ref = {}
        for g in sorted(os.listdir(os.path.join(work, "ref"))):
            if g.startswith(n + ".") and g.endswith(".jsonl"):
                for line in open(os.path.join(work, "ref", g)):
                    j = json.loads(line)
                    ref[j["question_id"]] = j["answer"]
        if len(cpp) == len(gt):
            r["cpp"] = _acc(cpp, gt, sorted(gt), types)
        both = sorted(q for q in ref if q in cpp)
        if both:
            r["ref_subset"] = {"questions": len(both), "ref": _acc(ref, gt, both, types)["overall"]["accuracy"],
                               "cpp": _acc(cpp, gt, both, types)["overall"]["accuracy"],
                               "same_answer": sum(ref[q].strip() == cpp[q].strip() for q in both)}
            r["ref_subset"]["diff_pp"] = r["ref_subset"]["cpp"] - r["ref_subset"]["ref"]
        runs[n] = r
    variants = {}
    for conn, scan in VARIANTS:
        v = vname(conn, scan)
        mine = [r for n, r in sorted(runs.items()) if n.rsplit("_s", 1)[0] == v]
        if not mine:
            continue
        row = {"seeds": len(mine), "steps": sorted(set(r["steps"] for r in mine)),
               "sync_ms_per_step": _mean_std([r["sync_ms_per_step"] for r in mine if r["sync_ms_per_step"]]),
               "mean_ms_per_step": _mean_std([r["mean_ms_per_step"] for r in mine]),
               "connector_params": mine[0]["connector_params"], "params": mine[0]["params"]}
        for t in types + ["overall"]:
            xs = [r["cpp"][t]["accuracy"] for r in mine if "cpp" in r and t in r["cpp"]]
            row[t] = _mean_std(xs) + (len(xs),)
        variants[v] = row
    summary = {"types": types, "questions": len(gt), "runs": runs, "variants": variants, "coordinator": coord}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    md = ["| variant | seeds | steps | ms/step (all 15 running) | " + " | ".join(types) + " | **overall** |",
          "|---" * (5 + len(types)) + "|"]
    for v, row in variants.items():
        cells = []
        for t in types + ["overall"]:
            m, s, k = row[t]
            cells.append("-" if m is None else "%.1f ± %.1f" % (m, s))
        sm = row["sync_ms_per_step"][0]
        md.append("| %s | %d | %s | %s | %s |" % (LABEL[v], row["seeds"], "/".join(map(str, row["steps"])),
                                                 "-" if sm is None else "%.0f" % sm, " | ".join(cells)))
    md.append("")
    md.append("| run | steps | train s | sync ms/step | mean ms/step | C++ overall | ref subset: n, ref, C++, same answers |")
    md.append("|---|---|---|---|---|---|---|")
    for n, r in sorted(runs.items()):
        rs = r.get("ref_subset")
        md.append("| %s | %d | %.0f | %s | %.0f | %s | %s |" % (
            n, r["steps"], r["train_seconds"], "%.1f" % r["sync_ms_per_step"] if r["sync_ms_per_step"] else "-",
            r["mean_ms_per_step"], "%.1f" % r["cpp"]["overall"]["accuracy"] if "cpp" in r else "-",
            "%d, %.2f, %.2f, %d" % (rs["questions"], rs["ref"], rs["cpp"], rs["same_answer"]) if rs else "-"))
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="report directory")
    ap.add_argument("--work", default="/tmp/vlmamba-ablation2", help="models, data, logs")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default="", help="comma list of variant names (default: all five)")
    ap.add_argument("--budget-s", type=float, default=520, help="whole script, wall clock")
    ap.add_argument("--train-until-s", type=float, default=380, help="the slowest run should end training by then")
    ap.add_argument("--scenes", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--test", type=int, default=800, help="held-out questions (cycling the 8 types)")
    ap.add_argument("--tf-test", type=int, default=400, help="teacher-forced learning-curve questions")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--rate-steps", type=int, default=50)
    ap.add_argument("--max-total", type=int, default=0, help="cap on the shared step count")
    ap.add_argument("--ready-timeout", type=float, default=150)
    ap.add_argument("--ref-shard", type=int, default=100, help="questions per reference-eval job")
    ap.add_argument("--ref-job-s", type=float, default=30, help="expected seconds of one reference shard job")
    ap.add_argument("--bin", help="vlmamba CLI for the C++ eval")
    ap.add_argument("--libs", help="shared libraries for --bin (with ld-linux-x86-64.so.2: run through that loader)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny model (CPU debugging)")
    ap.add_argument("--bench-lone", action="store_true")
    ap.add_argument("--bench-steps", type=int, default=30)
    ap.add_argument("--summarize", metavar="DIR", help="rebuild summary.* in DIR from DIR's files")
    a = ap.parse_args()
    if a.summarize:
        summarize(a.summarize, a.out or a.summarize)
    elif a.bench_lone:
        bench_lone(a)
    else:
        run(a)


if __name__ == "__main__":
    main()
