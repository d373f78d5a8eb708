#!/usr/bin/env bash
# One prepared run on a GPU machine: parity of the bundled fixtures on XLA's CUDA plugin against
# their references, then throughput of Block Transformers against vanilla models of the paper's
# sizes (btconvert and the PyTorch baseline on the same weights, in the same run), written as one
# JSON file and one markdown table.
#
#   bench/gpu/run.sh                      # on the GPU machine (see below)
#   bench/gpu/run.sh --tiny --backend xla:cpu   # the same steps on tiny models, on a CPU (CI)
#
# The GPU machine has no network and no Go: build the binary elsewhere
# (GOEXPERIMENT=simd CGO_ENABLED=1 go build -o .gpubin/btconvert ./cmd/btconvert) and bring it
# with this repository. Defaults there: JAX's CUDA PJRT plugin and PyTorch from /opt/torch/.venv.
#
# Options (or environment): --backend SPEC ($BACKEND; default the CUDA plugin), --bin PATH ($BIN;
# default .gpubin/btconvert, else btconvert on PATH), --python PATH ($PYTHON), --out DIR ($OUT;
# default gpu-out), --tiny (small shapes, batches and lengths: exercises every step in seconds).
# Budget: about 8 minutes on an H100/H200 (most of it compiling XLA graphs).
set -euo pipefail
cd "$(dirname "$0")/../.."

BACKEND=${BACKEND:-} BIN=${BIN:-} PYTHON=${PYTHON:-} OUT=${OUT:-gpu-out} TINY=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --backend) BACKEND=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --python) PYTHON=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --tiny) TINY=1; shift ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z $BIN ]]; then
  if [[ -x .gpubin/btconvert ]]; then BIN=.gpubin/btconvert; else BIN=$(command -v btconvert || true); fi
fi
[[ -x $BIN ]] || { echo "run.sh: no btconvert binary (give --bin)" >&2; exit 2; }
if [[ -z $BACKEND ]]; then
  plugin=$(ls /opt/torch/.venv/lib/python3*/site-packages/jax_plugins/xla_cuda*/xla_cuda_plugin.so 2>/dev/null | head -1 || true)
  [[ -n $plugin ]] || { echo "run.sh: no CUDA PJRT plugin found; give --backend" >&2; exit 2; }
  BACKEND=xla:$plugin
  export GOPJRT_CUDA_CHECKS=0 XLA_FLAGS=${XLA_FLAGS:---xla_gpu_cuda_data_dir=/usr/local/cuda}
fi
if [[ -z $PYTHON ]]; then
  if [[ -x /opt/torch/.venv/bin/python ]]; then PYTHON=/opt/torch/.venv/bin/python; else PYTHON=python3; fi
fi
export GOMLX_NO_AUTO_INSTALL=1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log() { echo "== $* ($(date +%T))"; }

device=cpu
dtype=f32
if [[ $BACKEND == *cuda* ]]; then device=cuda; dtype=bf16; fi
card=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)
"$BIN" --version >"$OUT/version.txt"
echo "card: ${card:-none}; backend: $BACKEND; compute dtype: $dtype" | tee -a "$OUT/version.txt"

if ((TINY)); then
  pairs=("tiny_block:--hidden 64 --block-layers 1 --token-layers 1 --vocab 300" "tiny_vanilla:--hidden 64 --heads 2 --ffn 256 --layers 2 --vocab 300")
  comparisons=("tiny_block tiny_vanilla")
  batches=1,2 prompt=8 gen=8 long_gen=16 reps=1 budget=64MiB
else
  pairs=(b4_85:"--preset block_main_b4_85" v160:"--preset vanilla_160" b4_300:"--preset block_main_b4_300" v410:"--preset vanilla_410")
  comparisons=("b4_85 v160" "b4_300 v410")
  batches=16,64,256 prompt=128 gen=256 long_gen=2048 reps=3 budget=100GiB
fi

log "parity of the fixtures on $BACKEND"
status=0
for f in bt-tiny pythia-tiny bt-from-pythia-tiny; do
  if ! "$BIN" verify "fixtures/$f" --reference "fixtures/$f/reference.safetensors" --backend "$BACKEND" \
      --json-file "$OUT/parity-$f.json" --force -q >"$OUT/parity-$f.txt" 2>&1; then
    status=1
  fi
  tail -n 1 "$OUT/parity-$f.txt"
done

log "models"
for p in "${pairs[@]}"; do
  name=${p%%:*}
  # shellcheck disable=SC2086 # the shape flags are words
  "$BIN" init ${p#*:} -o "$work/$name" -q >/dev/null
  "$BIN" export "$work/$name" -o "$work/$name-official" --format official -q >/dev/null
done

for c in "${comparisons[@]}"; do
  read -r a b <<<"$c"
  log "btconvert: $a vs $b, batch $batches, prompt $prompt, generate $gen"
  "$BIN" verify "$work/$a" --bench --against "$work/$b" --backend "$BACKEND" --compute-dtype "$dtype" \
    --batch "$batches" -p "$prompt" -n "$gen" --reps "$reps" --warmup 1 --json-file "$OUT/btconvert-$a-$b.json" --force -q >"$OUT/btconvert-$a-$b.txt"
  log "btconvert: $a vs $b, prompt $prompt, generate $long_gen at the largest batch that fits $budget"
  "$BIN" verify "$work/$a" --bench --against "$work/$b" --backend "$BACKEND" --compute-dtype "$dtype" \
    --max-batch --mem-budget "$budget" -p "$prompt" -n "$long_gen" --reps 1 --warmup 1 --json-file "$OUT/btconvert-$a-$b-long.json" --force -q >"$OUT/btconvert-$a-$b-long.txt"
  if "$PYTHON" -c "import torch, yaml" 2>/dev/null; then
    log "PyTorch: $a vs $b"
    "$PYTHON" bench/pytorch/baseline.py bench "$work/$a-official" "$work/$b-official" --batch "$batches" -p "$prompt" -n "$gen" \
      --reps "$reps" --device "$device" --dtype "$dtype" --json "$OUT/pytorch-$a-$b.json" >/dev/null
  else
    echo "(no PyTorch with PyYAML for $PYTHON: baseline skipped)"
  fi
done

log "summary"
"$PYTHON" - "$OUT" "${card:-CPU}" "$BACKEND" <<'PY'
import glob, json, os, sys
out, card, backend = sys.argv[1:4]
rows = []
for path in sorted(glob.glob(os.path.join(out, "btconvert-*.json")) + glob.glob(os.path.join(out, "pytorch-*.json"))):
    tool = "btconvert" if os.path.basename(path).startswith("btconvert") else "pytorch"
    for r in json.load(open(path))["bench"]:
        r["tool"] = tool
        r["model"] = r["model"].removesuffix("-official")
        rows.append(r)
parity = {}
for path in sorted(glob.glob(os.path.join(out, "parity-*.json"))):
    r = json.load(open(path))
    parity[os.path.basename(path)[7:-5]] = {"pass": r.get("pass"), "rel_l2_err": (r.get("parity") or {}).get("rel_l2_err")}
json.dump({"card": card, "backend": backend, "parity": parity, "bench": rows}, open(os.path.join(out, "gpu.json"), "w"), indent=2)
with open(os.path.join(out, "gpu.md"), "w") as md:
    md.write(f"Card: {card}; btconvert backend {backend}\n\n| fixture | parity | rel L2 |\n| --- | --- | --- |\n")
    for k, v in parity.items():
        md.write(f"| {k} | {'PASS' if v['pass'] else 'FAIL'} | {v['rel_l2_err']} |\n")
    md.write("\n| tool | model | batch | prompt | generate | prefill tok/s | decode tok/s | peak mem |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        md.write(f"| {r['tool']} | {r['model']} | {r['batch']} | {r['prompt_len']} | {r['gen_len']} | {r.get('prefill_tok_s', 0):.0f} | "
                 f"{r.get('decode_tok_s', 0):.0f} | {r.get('peak_mem_bytes', 0) / 2**30:.2f} GiB |\n")
print(open(os.path.join(out, "gpu.md")).read())
PY
exit $status
