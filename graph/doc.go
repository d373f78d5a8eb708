// Package graph runs Block Transformers and vanilla models with GoMLX: an Engine holds one model's
// weights on one backend, scores sequences, generates with KV caches, and collects calibration
// statistics.
//
// A model's math reads top to bottom in one file per part: a decoder stack's in its family's
// package (families/gptneox, families/llama), built from the Ops of family.go and registered
// there; builder.go holds the shared operations (Linear, norms, rotary, attention, lookups);
// blocktransformer.go (the composition: the embedder's projection, block decoder, token decoder
// with its prefix, scoring and one generated block; every embedder class, the lookup table
// included, and a token decoder with a stack of its own, such as T5's, is in its family's
// package, registered through family.go) and vanilla.go. Weights are graph parameters, uploaded once (weights.go);
// quantized ones stay packed on the device and are dequantized inside the graph (dequant.go).
//
// Graph arguments. Every graph takes the weights first, in Weights.Keys order (sorted
// "component/name"), then its own arguments:
//
//	score(ids [B, T] int32)                     -> logits
//	prefill(ids, rng)                           -> (tokens, logits, rng, caches...)
//	step(caches..., pos int32, last, rng)       -> (tokens, logits, rng, caches...)
//	calibrate(ids [B, T] int32)                 -> (sum, rows) for every Linear, sorted by key
//
// stepIn / stepOut (generate.go) name the generation graphs' arguments and results in one place.
//
// KV caches (cache.go). Each layer keeps keys as [B, KVH, S, hd] and values as [B, KVH, hd, S]
// (KVH: the key/value heads, fewer than the query heads under grouped-query attention), the
// layouts the attention products read in place: the step graph has fixed shapes (S = prompt +
// generated positions) and compiles once; the new position is written with a ScatterSum into the
// donated cache on the pure-Go backend (it lacks DynamicUpdateSlice), by the host into caches
// shared with XLA's CPU plugin, and with DynamicUpdateSlice (into a new buffer) on other XLA
// plugins (see cache.go).
// The token decoder's cache lives inside one block's graph and is thrown away after it (a T5
// token decoder's cross-attention keys and values too, computed once per block).
//
// Sampling (sample.go) happens in the graph (greedy, temperature, top-k, top-p), so a whole block
// is generated without a round trip to the host; the generator state is a runtime input seeded
// from Sampling.Seed, so changing the seed compiles nothing.
//
// Backends (backend.go): "go" (pure Go) is always there; "auto" picks XLA's CUDA or CPU PJRT
// plugin when one is installed; an explicit spec is never second-guessed and never falls back.
package graph
