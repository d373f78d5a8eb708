#!/usr/bin/env python3
"""Times the official Block Transformer code's own generate on a model btconvert exported.

The official code (the paper authors' block-transformer repository) builds its models from Hydra YAMLs that
name base models on the Hugging Face hub. This driver needs no hub: it builds the same classes
(LookupEmbedder, GPTNeoXBlockDecoder, GPTNeoXTokenDecoder, BlockTransformer; a vanilla model is
transformers' own class for its config.json, GPTNeoXForCausalLM as the official code loads it, or a
Llama-family one) from the full configs that
`btconvert export --format official` writes, loads the exported weights strictly, and times
`generate`, greedy, float32, eager attention, no early stop:

    pip install torch==2.5.1 transformers==4.39.3 omegaconf==2.3.0 safetensors==0.4.5
    python3 bench/official/bench.py --repo PATH/TO/block-transformer MODEL --batch 1,16 -p 128 -n 128

The official generate takes the prompt and the new tokens in one call and reports no split, so a
decode rate is a difference of two calls with the same prompt: B (N - k) / (t(P + N) - t(P + k)),
where k is one block of new tokens (a vanilla model: one token). The prompt's work is in both
calls and drops out. Prints JSON shaped like `verify --bench --json` ({"bench": [rows]}).
btconvert never needs Python; this is a comparison tool.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch


def load(repo, folder):
    """The official model classes, built from folder's config and loaded with its weights."""
    from safetensors.torch import load_file

    if os.path.exists(os.path.join(folder, "config.json")):  # a vanilla model: HF's own class (GPT-NeoX, Llama, ...)
        from transformers import AutoModelForCausalLM

        m = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager")
        m.generation_config.eos_token_id = None
        m.generation_config.pad_token_id = 0
        return m.eval(), 1, "vanilla"

    sys.path.insert(0, repo)
    from omegaconf import OmegaConf
    from transformers import GPTNeoXConfig
    from model.block_transformer import BlockTransformer
    from model.block_decoder import GPTNeoXBlockDecoder
    from model.embedder.lookup import LookupConfig, LookupEmbedder
    from model.token_decoder import GPTNeoXTokenDecoder

    cfg = OmegaConf.load(os.path.join(folder, "config.yaml"))
    for part in ("block_decoder", "token_decoder"):
        if cfg[part].cls != "gpt-neo-x":
            sys.exit(f"{folder}: {part}.cls {cfg[part].cls}: this driver builds gpt-neo-x decoders only")
    if cfg.embedder.cls != "lookup":
        sys.exit(f"{folder}: embedder.cls {cfg.embedder.cls}: this driver builds the lookup embedder only")
    common = dict(attn_implementation="eager", torch_dtype=torch.float32)
    n_emb = cfg.embedder.get("n_embedding_tokens", 1)

    def neox(part):
        return GPTNeoXConfig(**OmegaConf.to_container(cfg[part].config))

    block = GPTNeoXBlockDecoder._from_config(neox("block_decoder"), n_embedding_tokens=n_emb,
                                             use_block_decoding_loss=False,
                                             block_decoding_loss_type="contrastive", **common)
    emb_cfg = LookupConfig(**OmegaConf.to_container(cfg.embedder.config))
    embedder = LookupEmbedder._from_config(emb_cfg, block_length=cfg.block_length, n_embedding_tokens=n_emb,
                                           projection_method=cfg.embedder.get("projection_method"),
                                           projection_hidden_size=block.hidden_size, **common)
    token = GPTNeoXTokenDecoder._from_config(neox("token_decoder"), block_length=cfg.block_length,
                                             n_embedding_tokens=n_emb, projection_hidden_size=block.hidden_size,
                                             expansion_method=cfg.token_decoder.expansion_method,
                                             expansion_ratio=cfg.token_decoder.get("expansion_ratio"),
                                             decoding_strategy=cfg.token_decoder.decoding_strategy, **common)
    # As the official benchmark sets them: pad 1 (not the EOS 0 the token decoder starts from), no early stop.
    token.config.pad_token_id = 1
    token.config.eos_token_id = 0
    token.generation_config.pad_token_id = 1
    token.generation_config.eos_token_id = None
    m = BlockTransformer(embedder=embedder, block_decoder=block, token_decoder=token, token_mapper=None,
                         use_token_decoding_loss=True, use_block_decoding_loss=False,
                         decoding_strategy=cfg.token_decoder.decoding_strategy)
    m.load_state_dict(load_file(os.path.join(folder, "model.safetensors")), strict=True)
    return m.eval(), cfg.block_length, "block"


def timed_generate(m, kind, ids, max_length):
    with torch.inference_mode():
        start = time.perf_counter()
        if kind == "block":
            out = m.generate(ids, max_length=max_length)
        else:
            out = m.generate(ids, attention_mask=torch.ones_like(ids), max_length=max_length,
                             min_length=max_length, do_sample=False)
        took = time.perf_counter() - start
    if out.shape[-1] != max_length:
        sys.exit(f"generate returned {out.shape[-1]} tokens, want {max_length}")
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a folder written by btconvert export --format official")
    ap.add_argument("--repo", required=True, help="a checkout of the official block-transformer code")
    ap.add_argument("--batch", default="1", help="batch sizes, comma separated")
    ap.add_argument("-p", "--prompt", type=int, default=128)
    ap.add_argument("-n", "--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m, k, kind = load(a.repo, a.model)
    vocab = m.config.vocab_size if kind == "vanilla" else m.token_decoder.config.vocab_size
    if a.new <= k:
        sys.exit(f"-n {a.new}: need more new tokens than one block ({k})")
    rows = []
    for B in [int(x) for x in a.batch.split(",")]:
        g = torch.Generator().manual_seed(a.seed)
        ids = torch.randint(0, vocab, (B, a.prompt), generator=g)
        timed_generate(m, kind, ids, a.prompt + k)  # warm-up
        rates = []
        for _ in range(a.reps):
            short = timed_generate(m, kind, ids, a.prompt + k)
            full = timed_generate(m, kind, ids, a.prompt + a.new)
            rates.append(B * (a.new - k) / max(full - short, 1e-9))
        rows.append({"model": os.path.basename(os.path.normpath(a.model)), "runtime": "official code" if kind == "block" else "transformers",
                     "batch": B, "prompt": a.prompt, "new_tokens": a.new, "threads": a.threads,
                     "decode_tokens_per_s": round(statistics.median(rates), 1)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"bench": rows}, indent=1))


if __name__ == "__main__":
    main()
