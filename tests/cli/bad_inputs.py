#!/usr/bin/env python3
"""Every crash reproducer of tests/data/fuzz, handed to the CLI the way a user would: exit 1, one stderr line naming
the file, and a peak resident size under 400 MB, also for the files that claim gigabytes (issue 18).

Usage: bad_inputs.py VLMAMBA_BINARY DATA_DIR
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile

LIMIT_MB = 400


def main():
    binary, data = sys.argv[1], sys.argv[2]
    fuzz = os.path.join(data, "fuzz")
    failures, cases = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for target in sorted(os.listdir(fuzz)):
            for name in sorted(os.listdir(os.path.join(fuzz, target))):
                path = os.path.join(fuzz, target, name)
                argv, named = command(binary, target, path, os.path.join(tmp, f"{target}-{name}"))
                cases += 1
                problem = check(argv, named)
                if problem:
                    failures.append(f"{target}/{name}: {problem}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"bad inputs: {cases} files refused with one line each, peak RSS under {LIMIT_MB} MB")


def command(binary, target, path, work):
    """The CLI command that reads this file, and the name its error must mention."""
    if target == "image":
        return [binary, "run", "-m", model_dir(), "--image", path, "-p", "hi"], os.path.basename(path)
    if target in ("safetensors", "pytorch"):
        return [binary, "inspect", path], os.path.basename(path)
    if target == "tokenizer":
        return [binary, "tokenize", "--tokenizer", path, "--text", "hi"], os.path.basename(path)
    # A config: put it in a model directory of its own.
    os.makedirs(work)
    shutil.copy(path, os.path.join(work, "config.json"))
    if target == "mamba_config":
        return [binary, "generate", "-m", work, "-p", "hi"], "config.json"
    if target == "vision_config":
        pixels = os.path.join(os.path.dirname(path), "..", "..", "vlmamba", "tiny-clip-mlp", "golden.safetensors")
        return [binary, "vision", "-m", work, "--pixels", pixels, "-o", os.path.join(work, "out.safetensors")], \
            "config.json"
    return [binary, "run", "-m", work, "-p", "hi"], "config.json"


def model_dir():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "zoo", "shapes-vlmamba")


def check(argv, named):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "no answer within 60 s"
    # The largest peak of any child so far: under the limit after each child means every child stayed under it.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    lines = [l for l in p.stderr.splitlines() if not l.startswith("loaded ")]
    if p.returncode != 1:
        return f"exit {p.returncode}, expected 1: {p.stderr.strip()[:300]}"
    if len(lines) != 1:
        return f"stderr has {len(lines)} lines, expected 1: {p.stderr.strip()[:300]}"
    if named not in lines[0]:
        return f"the error does not name {named}: {lines[0][:300]}"
    if peak_mb >= LIMIT_MB:
        return f"peak RSS {peak_mb:.0f} MB, expected under {LIMIT_MB} MB"
    return None


if __name__ == "__main__":
    main()
