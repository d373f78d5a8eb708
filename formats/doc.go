// Package formats is the in-memory model every reader produces and every writer consumes, and the
// map of the packages that read and write them:
//
//   - safetensors: the file format (strict header validation, reads of one tensor at a time,
//     streaming writer, HF shards, dtype codecs);
//   - official: the official Block Transformer layout, behind the Layout interface (the families'
//     HF layouts, such as families/gptneox's, register with source); source opens whatever a
//     path holds;
//   - modeldir: btconvert's own model folder, manifest, bundles and recorded reports;
//   - uptrain, randinit: models built from other models or from nothing;
//   - tokenizer: text to ids; fsio: reading inputs and writing outputs safely; errs: bad input.
//
// A Model's tensors are lazy: a Tensor knows its name, dtype and shape and how to produce its
// bytes (read from a file, converted, quantized, initialised) only when asked. Converting a model
// is a pipeline of such Models, and only the tensor being written exists in memory.
package formats
