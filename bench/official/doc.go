// Package official holds bench.py, which times the official Block Transformer code's own generate
// on models btconvert exports (docs/BENCHMARKS.md); its test checks that the script parses.
package official
