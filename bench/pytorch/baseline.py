#!/usr/bin/env python3
"""PyTorch baseline for btconvert's throughput benchmarks.

The same models (read from `btconvert export --format official` folders), the same work (greedy,
KV-cached, random prompts, no early stop) and the same measures as `btconvert verify --bench`, in
plain PyTorch: no transformers, so it runs with Debian's python3-torch. It is a comparison tool;
btconvert never needs Python.

    python3 bench/pytorch/baseline.py bench MODEL [MODEL2] --batch 1,4,16 -p 128 -n 128 --reps 3
    python3 bench/pytorch/baseline.py check MODEL --reference MODEL/reference.safetensors
    python3 bench/pytorch/baseline.py score MODEL TEXT --threads 2
    python3 bench/pytorch/baseline.py matmul -m 1,16,64 --threads 2

`bench` prints JSON shaped like `verify --bench --json` ({"bench": [rows]}); `check` scores the
reference's input_ids and compares with its logits (exit 1 past --max-rel-err).

A Block Transformer runs as the official code runs it: block decoder over the prompt blocks with
a block-level KV cache, then per block the token decoder from the expansion layer's r prefix
vectors with a fresh local cache, L tokens one at a time; the finished block is embedded and fed to
the block decoder as one new position. A vanilla GPT-NeoX model runs one token per step.
"""

import argparse
import json
import math
import re
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
          "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8}


def read_safetensors(path):
    """Every tensor of one safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(data[b:e], dtype=DTYPES[info["dtype"]]) if e > b else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def read_checkpoint(folder):
    """model.safetensors, or HF shards with their index."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        out = {}
        with open(index) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                out.update(read_safetensors(os.path.join(folder, shard)))
        return out
    return read_safetensors(os.path.join(folder, "model.safetensors"))


class Stack:
    """A GPT-NeoX stack (parallel or sequential residual, rotary on the first dims of each head)."""

    def __init__(self, w, prefix, cfg, dtype, device):
        self.layers = cfg["num_hidden_layers"]
        self.D = cfg["hidden_size"]
        self.H = cfg["num_attention_heads"]
        self.hd = self.D // self.H
        self.rot = int(self.hd * cfg.get("rotary_pct", 0.25))
        self.base = cfg.get("rotary_emb_base", 10000)
        self.eps = cfg.get("layer_norm_eps", 1e-5)
        self.parallel = cfg.get("use_parallel_residual", True)
        g = lambda n: w[prefix + n].to(device=device, dtype=dtype)
        self.p = [{k: g("layers.%d.%s" % (i, k)) for k in (
            "input_layernorm.weight", "input_layernorm.bias", "post_attention_layernorm.weight", "post_attention_layernorm.bias",
            "attention.query_key_value.weight", "attention.query_key_value.bias", "attention.dense.weight", "attention.dense.bias",
            "mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias", "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias")}
            for i in range(self.layers)]
        self.final = (g("final_layer_norm.weight"), g("final_layer_norm.bias"))
        inv = 1.0 / (self.base ** (torch.arange(0, self.rot, 2, dtype=torch.float64) / self.rot))
        ang = torch.outer(torch.arange(cfg.get("max_position_embeddings", 2048) * 8, dtype=torch.float64), inv)
        ang = torch.cat([ang, ang], dim=-1)
        self.cos, self.sin = ang.cos().to(device, dtype), ang.sin().to(device, dtype)

    def rope(self, x, pos):
        if self.rot == 0:
            return x
        c, s = self.cos[pos][None, None], self.sin[pos][None, None]  # [1, 1, T, rot]
        xr, rest = x[..., :self.rot], x[..., self.rot:]
        half = self.rot // 2
        rotated = torch.cat([-xr[..., half:], xr[..., :half]], dim=-1)
        return torch.cat([xr * c + rotated * s, rest], dim=-1)

    def ln(self, x, w, b):
        return F.layer_norm(x.float(), (x.shape[-1],), w.float(), b.float(), self.eps).to(x.dtype)

    def __call__(self, x, pos, cache):
        """x [B, T, D] at positions pos (a range); cache is a list of (k, v) per layer, grown here
        by concatenation (as HF's dynamic cache does)."""
        B, T, _ = x.shape
        mask = None
        past = cache[0][0].shape[2] if cache and cache[0] is not None else 0
        if T > 1:
            mask = torch.full((T, past + T), float("-inf"), device=x.device).triu(past + 1)
        for i, p in enumerate(self.p):
            a = self.ln(x, p["input_layernorm.weight"], p["input_layernorm.bias"])
            qkv = F.linear(a, p["attention.query_key_value.weight"], p["attention.query_key_value.bias"])
            qkv = qkv.view(B, T, self.H, 3 * self.hd).transpose(1, 2)  # per-head interleaved q, k, v
            q, k, v = qkv.split(self.hd, dim=-1)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if cache[i] is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
            s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(self.hd)
            if mask is not None:
                s = s + mask
            ctx = (s.softmax(-1).to(v.dtype) @ v).transpose(1, 2).reshape(B, T, self.D)
            attn = F.linear(ctx, p["attention.dense.weight"], p["attention.dense.bias"])

            def mlp(h):
                h = self.ln(h, p["post_attention_layernorm.weight"], p["post_attention_layernorm.bias"])
                h = F.gelu(F.linear(h, p["mlp.dense_h_to_4h.weight"], p["mlp.dense_h_to_4h.bias"]))
                return F.linear(h, p["mlp.dense_4h_to_h.weight"], p["mlp.dense_4h_to_h.bias"])
            if self.parallel:
                x = x + attn + mlp(x)
            else:
                x = x + attn
                x = x + mlp(x)
        return self.ln(x, *self.final)

    def new_cache(self):
        return [None] * self.layers


class Vanilla:
    def __init__(self, folder, dtype, device):
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        w = read_checkpoint(folder)
        self.params = sum(t.numel() for t in w.values())
        self.stack = Stack(w, "gpt_neox.", self.cfg, dtype, device)
        self.embed_in = w["gpt_neox.embed_in.weight"].to(device, dtype)
        self.embed_out = w.get("embed_out.weight", w.get("lm_head.weight")).to(device, dtype)
        self.first = 1  # tokens the prefill emits

    def score(self, ids):
        T = ids.shape[1]
        h = self.stack(self.embed_in[ids], torch.arange(T, device=ids.device), self.stack.new_cache())
        return F.linear(h, self.embed_out).float()

    def generate(self, ids, G, sync):
        B, T = ids.shape
        cache = self.stack.new_cache()
        t0 = time.perf_counter()
        h = self.stack(self.embed_in[ids], torch.arange(T, device=ids.device), cache)
        tok = F.linear(h[:, -1], self.embed_out).argmax(-1)
        out = [tok]
        sync()
        t1 = time.perf_counter()
        for i in range(G - 1):
            h = self.stack(self.embed_in[tok][:, None], torch.arange(T + i, T + i + 1, device=ids.device), cache)
            tok = F.linear(h[:, -1], self.embed_out).argmax(-1)
            out.append(tok)
        sync()
        return torch.stack(out, 1), t1 - t0, time.perf_counter() - t1, G - 1


class Block:
    def __init__(self, folder, dtype, device):
        import yaml
        with open(os.path.join(folder, "config.yaml")) as f:
            y = yaml.safe_load(f)
        w = read_checkpoint(folder)
        self.params = sum(t.numel() for n, t in w.items() if n != "block_decoder.gpt_neox.embed_in.weight")
        self.L = y["block_length"]
        td = y["token_decoder"]
        if td.get("decoding_strategy", "prefix") != "prefix":
            raise SystemExit("only prefix decoding is implemented here")
        self.r = td.get("expansion_ratio", 1)
        self.bd = Stack(w, "block_decoder.gpt_neox.", y["block_decoder"]["config"], dtype, device)
        self.td = Stack(w, "token_decoder.gpt_neox.", td["config"], dtype, device)
        self.emb = w["embedder.embeddings.weight"].to(device, dtype)
        self.proj = None
        if "embedder.projection_layer.weight" in w:  # Conv1d [D, De, L] as a Linear over the concatenation
            P = w["embedder.projection_layer.weight"]
            self.proj = (P.permute(0, 2, 1).reshape(P.shape[0], -1).to(device, dtype), w["embedder.projection_layer.bias"].to(device, dtype))
        E = w["token_decoder.expansion_layer.weight"]
        self.exp = (E[..., 0].to(device, dtype), w["token_decoder.expansion_layer.bias"].to(device, dtype))
        self.tok_in = w["token_decoder.gpt_neox.embed_in.weight"].to(device, dtype)
        self.head = w["token_decoder.embed_out.weight"].to(device, dtype)
        self.first = self.L

    def embed_blocks(self, ids):  # [B, n, L] -> [B, n, D]
        B, n, L = ids.shape
        x = self.emb[ids].reshape(B, n, -1)
        return F.linear(x, *self.proj) if self.proj is not None else x

    def prefix(self, ctx):  # [M, D] -> [M, r, Dt]
        return F.linear(ctx, *self.exp).view(ctx.shape[0], self.r, -1)

    def score(self, ids):
        B, T = ids.shape
        n = T // self.L
        blocks = ids.view(B, n, self.L)
        h = self.bd(self.embed_blocks(blocks), torch.arange(n, device=ids.device), self.bd.new_cache())
        ctx = h[:, :-1].reshape(B * (n - 1), -1)
        tgt = blocks[:, 1:].reshape(B * (n - 1), self.L)
        x = torch.cat([self.prefix(ctx), self.tok_in[tgt[:, :-1]]], 1)
        out = self.td(x, torch.arange(x.shape[1], device=ids.device), self.td.new_cache())
        return F.linear(out[:, self.r - 1:], self.head).float().view(B, n - 1, self.L, -1)

    def block(self, ctx):
        """One block of L tokens from contexts [B, D]: a fresh local cache per block."""
        cache = self.td.new_cache()
        h = self.td(self.prefix(ctx), torch.arange(self.r, device=ctx.device), cache)
        toks = [F.linear(h[:, -1], self.head).argmax(-1)]
        for j in range(1, self.L):
            h = self.td(self.tok_in[toks[-1]][:, None], torch.arange(self.r + j - 1, self.r + j, device=ctx.device), cache)
            toks.append(F.linear(h[:, -1], self.head).argmax(-1))
        return torch.stack(toks, 1)

    def generate(self, ids, G, sync):
        B, T = ids.shape
        pad = (-T) % self.L
        if pad:
            ids = torch.cat([torch.zeros(B, pad, dtype=ids.dtype, device=ids.device), ids], 1)
        n = ids.shape[1] // self.L
        cache = self.bd.new_cache()
        t0 = time.perf_counter()
        h = self.bd(self.embed_blocks(ids.view(B, n, self.L)), torch.arange(n, device=ids.device), cache)
        blk = self.block(h[:, -1])
        out = [blk]
        sync()
        t1 = time.perf_counter()
        steps = 0
        while len(out) * self.L < G:
            h = self.bd(self.embed_blocks(blk[:, None]), torch.arange(n + steps, n + steps + 1, device=ids.device), cache)
            blk = self.block(h[:, -1])
            out.append(blk)
            steps += 1
        sync()
        return torch.cat(out, 1)[:, :G], t1 - t0, time.perf_counter() - t1, steps


def load(folder, dtype, device):
    if os.path.exists(os.path.join(folder, "config.yaml")):
        return Block(folder, dtype, device)
    return Vanilla(folder, dtype, device)


def stats(v):
    if not v:
        return 0, 0, 0, 0, 0
    s = sorted(v)
    mean = sum(s) / len(s)
    sd = math.sqrt(sum((x - mean) ** 2 for x in s) / (len(s) - 1)) if len(s) > 1 else 0.0
    n = len(s)
    med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return med, mean, sd, s[0], s[-1]


def bench(args):
    device = torch.device(args.device)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    rows = []
    for folder in args.models:
        model = load(folder, dtype, device)
        V = model.head.shape[0] if isinstance(model, Block) else model.embed_out.shape[0]
        for P in args.prompt_len:
            for G in args.gen_len:
                for B in args.batch:
                    g = torch.Generator().manual_seed(args.seed * 1000003 + B)
                    ids = torch.randint(1, V, (B, P), generator=g).to(device)
                    pre, dec, step = [], [], []
                    with torch.inference_mode():
                        for rep in range(args.warmup + args.reps):
                            _, tp, td, steps = model.generate(ids, G, sync)
                            if rep < args.warmup:
                                continue
                            pre.append(B * (P + (-P) % getattr(model, "L", 1)) / tp)
                            if steps:
                                dec.append(B * (G - model.first) / td)
                                step.append(td * 1e3 / steps)
                    row = {"model": os.path.basename(os.path.normpath(folder)), "params": model.params, "backend": "pytorch-%s-%s" % (device.type, args.dtype),
                           "batch": B, "prompt_len": P, "gen_len": G, "reps": args.reps}
                    for key, v in (("prefill_tok_s", pre), ("decode_tok_s", dec)):
                        med, mean, sd, lo, hi = stats(v)
                        row.update({key: med, key + "_mean": mean, key + "_std": sd, key + "_min": lo, key + "_max": hi})
                    row["step_ms"] = stats(step)[0]
                    row["peak_mem_bytes"] = (torch.cuda.max_memory_allocated() if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
                    row["threads"] = torch.get_num_threads()
                    rows.append(row)
                    print("%-24s batch %4d  pp%-5d %9.1f t/s  tg%-5d %9.1f t/s" % (row["model"], B, P, row["prefill_tok_s"], G, row["decode_tok_s"]), file=sys.stderr)
        del model
    out = json.dumps({"bench": rows, "torch": torch.__version__, "blas": blas()}, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            f.write(out + "\n")
    print(out)


def blas():
    """Which BLAS the CPU matmuls use: PyTorch's own build setting (mkl for the PyPI wheels), and for
    a build on the system BLAS the library it resolves to (Debian's reference BLAS is ~25x slower
    than OpenBLAS)."""
    m = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    info = m.group(1) if m else "unknown"
    if info == "mkl":
        return info
    return info + " " + os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")


def check(args):
    model = load(args.model, torch.float64 if args.f64 else torch.float32, torch.device("cpu"))
    ref = read_safetensors(args.reference)
    with torch.inference_mode():
        got = model.score(ref["input_ids"])
    want = ref["logits"].to(got.dtype)
    if got.shape != want.shape:
        raise SystemExit("shape %s, reference %s" % (tuple(got.shape), tuple(want.shape)))
    rel = ((got - want).norm() / want.norm()).item()
    with torch.inference_mode():
        gen, _, _, _ = model.generate(ref["prompt_ids"], ref["greedy_ids"].shape[1], lambda: None)
    greedy = bool((gen == ref["greedy_ids"]).all())
    print(json.dumps({"model": args.model, "rel_l2_err": rel, "greedy_match": greedy}))
    if rel > args.max_rel_err or not greedy:
        sys.exit(1)


def score(args):
    """Scoring throughput as `btconvert verify --eval-text` measures it: byte-level ids, windows
    of --window tokens, batches of --batch windows, one full forward and the log-softmax of every
    scored position (cross-entropy) each."""
    torch.set_num_threads(args.threads)
    model = load(args.model, torch.float32, torch.device("cpu"))
    with open(args.text, "rb") as f:
        ids = list(f.read())
    T = args.window
    windows = [ids[i:i + T] for i in range(0, len(ids) - T + 1, T)]
    per_window = (T // model.first - 1) * model.first if model.first > 1 else T - 1
    best = None
    with torch.inference_mode():
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for i in range(0, len(windows), args.batch):
                x = torch.tensor(windows[i:i + args.batch], dtype=torch.long)
                logits = model.score(x)
                # the negative log-likelihood of every scored token, as perplexity needs it
                if model.first > 1:
                    lg, tgt = logits.reshape(x.shape[0], -1, logits.shape[-1]), x[:, model.first:]
                else:
                    lg, tgt = logits[:, :-1], x[:, 1:]
                F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tgt.reshape(-1), reduction="sum")
            d = time.perf_counter() - t0
            best = d if best is None else min(best, d)
    n = len(windows) * per_window
    print(json.dumps({"model": args.model, "tokens_scored": n, "seconds": best, "tokens_per_s": n / best,
                      "threads": args.threads, "blas": blas()}))


def matmul(args):
    """GFLOP/s of x [M, K] times a [N, K] weight (F.linear), as BenchmarkMatmulRate measures it."""
    torch.set_num_threads(args.threads)
    w = torch.randn(args.n, args.k)
    for M in args.m:
        x = torch.randn(M, args.k)
        for _ in range(3):
            F.linear(x, w)
        t0 = time.perf_counter()
        for _ in range(args.reps):
            F.linear(x, w)
        d = (time.perf_counter() - t0) / args.reps
        print(json.dumps({"m": M, "n": args.n, "k": args.k, "ms": d * 1e3, "gflops": 2 * M * args.n * args.k / d / 1e9}))


def ints(s):
    return [int(x) for x in s.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time greedy generation")
    b.add_argument("models", nargs="+", help="exported folders (btconvert export --format official)")
    b.add_argument("--batch", type=ints, default=[1, 4])
    b.add_argument("-p", "--prompt-len", type=ints, default=[128])
    b.add_argument("-n", "--gen-len", type=ints, default=[64])
    b.add_argument("--reps", type=int, default=2)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--device", default="cpu")
    b.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    b.add_argument("--threads", type=int, default=os.cpu_count())
    b.add_argument("--json", help="also write the JSON here")
    c = sub.add_parser("check", help="compare with a reference.safetensors")
    c.add_argument("model")
    c.add_argument("--reference", required=True)
    c.add_argument("--max-rel-err", type=float, default=1e-4)
    c.add_argument("--f64", action="store_true", help="compute in float64")
    s = sub.add_parser("score", help="scoring throughput over a text (byte-level vocabularies)")
    s.add_argument("model")
    s.add_argument("text")
    s.add_argument("--window", type=int, default=256)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--reps", type=int, default=3)
    s.add_argument("--threads", type=int, default=os.cpu_count())
    mm = sub.add_parser("matmul", help="matrix product rate (default: the 50304 x 256 vocabulary head)")
    mm.add_argument("-m", type=ints, default=[1, 16, 64])
    mm.add_argument("-n", type=int, default=50304)
    mm.add_argument("-k", type=int, default=256)
    mm.add_argument("--reps", type=int, default=20)
    mm.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if args.cmd == "matmul":
        matmul(args)
    elif args.cmd == "bench":
        torch.set_num_threads(args.threads)
        bench(args)
    elif args.cmd == "score":
        score(args)
    else:
        check(args)


if __name__ == "__main__":
    main()
