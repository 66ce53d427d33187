#!/usr/bin/env bash
# The GPU evidence of issue 24 in one call:  bash bench/gpu/evidence.sh BUDGET_SECONDS OUT_DIR [options]
#
#   --cpu-smoke       tiny settings on the CPU (about 2-3 minutes): what the test runs; uses the built kit
#                     (bin/Release/net10.0/Mora.Notebooks.dll) unless --kit says otherwise
#   --only P,P        run only these parts (info, bench, peers, interop, cuda, memorization); the others are skipped
#   --kit PATH        the kit: a run.sh (the bundle: `dotnet run -c Release -- bundle`), a Mora.Notebooks.dll, or an
#                     executable (default: .device/run.sh on a GPU, else the built dll; MORA_KIT does the same)
#   --pack DIR        where the packed results go: SUMMARY.md and evidence-<card>.tar.gz (split into parts of 15 MiB,
#                     at most 7): at most 8 files (default: $OUT when the environment sets it, else OUT_DIR.pack)
#   --python EXE      the Python with torch (default: MORA_PYTHON, else the first of python3, /usr/bin/python3 that
#                     imports torch)
#
# Parts, in priority order, each under `timeout` at its share of the budget (what a part leaves unused passes to the
# next): (a) info, (b) the kit's bench on CUDA in bfloat16 and float32, the rotation formulations side by side, launch
# counts, (c) the peers (PyTorch eager layer, HF transformers + PEFT training step) and the kit's training step at the
# same presets, (d) interop with the installed transformers/PEFT, (e) CUDA behaviour (a real out-of-memory; a run killed
# after its first checkpoint and resumed), (f) memorisation at GPU scale. A part that fails or times out never stops the
# next. The budget is wall time from this script's start (the bundle's unpacking included); the last 20 s (smoke: 10 s)
# are kept for the ratios, SUMMARY.md and packing. Every step's output goes to OUT_DIR/logs/. See bench/gpu/README.md.
set -uo pipefail
START=$(date +%s)
DEVICE_OUT=${OUT:-}                      # the device tool's folder for returned files, when it sets one
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] || usage
BUDGET=$1; RES=$2; shift 2
case "$BUDGET" in ''|*[!0-9]*) echo "error: BUDGET_SECONDS must be a whole number of seconds, got '$BUDGET'" >&2; exit 2;; esac
SMOKE=0; ONLY=""; KIT_ARG=${MORA_KIT:-}; PACK=""; PY_ARG=${MORA_PYTHON:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) SMOKE=1;;
    --only) ONLY=${2:?--only needs a list}; shift;;
    --kit) KIT_ARG=${2:?--kit needs a path}; shift;;
    --pack) PACK=${2:?--pack needs a folder}; shift;;
    --python) PY_ARG=${2:?--python needs an executable}; shift;;
    -h|--help) usage;;
    *) echo "error: unknown option '$1' (see --help)" >&2; exit 2;;
  esac
  shift
done
for p in ${ONLY//,/ }; do
  case "$p" in info|bench|peers|interop|cuda|memorization) ;; *) echo "error: --only: unknown part '$p' (info, bench, peers, interop, cuda, memorization)" >&2; exit 2;; esac
done
mkdir -p "$RES/logs" || { echo "error: cannot create $RES" >&2; exit 2; }
RES=$(cd "$RES" && pwd)
STATUS="$RES/status.tsv"; : > "$STATUS"
RESERVE=$([ $SMOKE = 1 ] && echo 10 || echo 20)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$([ $SMOKE = 1 ] && echo 1 || echo 8)}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 PYTHONDONTWRITEBYTECODE=1

now() { date +%s; }
elapsed() { echo $(( $(now) - START )); }

# ---------------------------------------------------------------- the kit, the python, the card
KIT=()
if [ -n "$KIT_ARG" ]; then
  case "$KIT_ARG" in *.dll) KIT=(dotnet "$KIT_ARG");; *.sh) KIT=(bash "$KIT_ARG");; *) KIT=("$KIT_ARG");; esac
elif [ $SMOKE = 0 ] && [ -f "$repo/.device/run.sh" ]; then KIT=(bash "$repo/.device/run.sh")
elif [ -f "$repo/bin/Release/net10.0/Mora.Notebooks.dll" ]; then KIT=(dotnet "$repo/bin/Release/net10.0/Mora.Notebooks.dll")
fi
kit_desc=${KIT[*]:-"(none: build with dotnet build -c Release, or bundle)"}

PY=""; torch_version=""
for candidate in $PY_ARG python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 && torch_version=$("$candidate" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    PY=$(command -v "$candidate"); break
  fi
done
if [ -n "$PY" ]; then
  PYCMD=("$PY"); py_desc="$PY (torch $torch_version)"
elif command -v python3 >/dev/null 2>&1; then
  PYCMD=("$(command -v python3)"); py_desc="$(command -v python3), which cannot import torch"
else
  PYCMD=(bash -c 'echo "skipped: no python3 on PATH"; exit 77' _); py_desc="none (no python3 on PATH)"
fi

CUDA=0; CARD_NAME="cpu"
if [ $SMOKE = 0 ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) && [ -n "$name" ]; then
    CUDA=1; CARD_NAME=$name
  elif [ -n "$PY" ] && name=$("$PY" -c 'import torch; assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0))' 2>/dev/null) && [ -n "$name" ]; then
    CUDA=1; CARD_NAME=$name
  fi
fi
CARD=$(echo "$CARD_NAME" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+|-+$//g')
[ -n "$CARD" ] || CARD=gpu
DEV=$([ $CUDA = 1 ] && echo cuda || echo cpu)
NO_CUDA="no CUDA (nvidia-smi and torch see no GPU)"
[ $SMOKE = 1 ] && NO_CUDA="no CUDA in the CPU smoke run"

# ---------------------------------------------------------------- steps, shares and statuses
# record PART STEP STATUS SECONDS DETAIL LOG   (status.tsv, from which SUMMARY.md is written)
# (an empty detail or log is written "-": read splits on tabs and would merge empty fields)
record() { local log=${6#"$RES"/}; printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:--}" "${log:--}" >> "$STATUS"; }
selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

PART=""; PART_END=0; CARRY=0
# begin_part NAME SHARE_PERCENT [FLOOR_SECONDS]: the part may run until now + its share (at least the floor) + what the
# parts before it left unused, and never past the budget minus the reserve.
begin_part() {
  PART=$1
  local share=$(( BUDGET * $2 / 100 ))
  [ $share -lt "${3:-0}" ] && share=${3:-0}
  selected "$PART" || share=0
  PART_END=$(( $(now) + share + CARRY ))
  local hard=$(( START + BUDGET - RESERVE ))
  [ $PART_END -gt $hard ] && PART_END=$hard
}
end_part() { CARRY=$(( PART_END - $(now) )); [ $CARRY -lt 0 ] && CARRY=0; }

# run_step NAME WEIGHT REST [--min SECONDS] -- COMMAND...: the step gets WEIGHT/REST of what is left of its part (REST =
# the weights of this and the part's later steps), runs under timeout, and is recorded ok / failed (exit N) / timed out /
# skipped. With --min, a step whose share is smaller is skipped rather than started (it could not finish: the time is
# better left unspent). A command that exits 77 skipped itself; its last "skipped:" line says why.
run_step() {
  local name=$1 weight=$2 rest=$3 min=3; shift 3
  if [ "$1" = --min ]; then min=$2; shift 2; fi
  shift                                                    # --
  local log="$RES/logs/$PART-$name.log"
  if ! selected "$PART"; then record "$PART" "$name" "skipped: not selected (--only $ONLY)" 0 "" ""; return 0; fi
  local left=$(( PART_END - $(now) )); [ $left -lt 0 ] && left=0
  local t=$(( left * weight / rest ))
  if [ "$t" -lt 3 ]; then record "$PART" "$name" "skipped: time share exhausted" 0 "${left}s left of the part's share" ""; return 0; fi
  if [ "$t" -lt "$min" ]; then
    record "$PART" "$name" "skipped: time share exhausted (needs about ${min}s, ${t}s left; run it alone: --only $PART)" 0 "" ""; return 0
  fi
  local t0; t0=$(now)
  echo "[$(elapsed)s] $PART/$name (up to ${t}s): $*" >> "$RES/logs/progress.log"
  echo "[$(elapsed)s] $PART/$name (up to ${t}s)"
  timeout --kill-after=5 "$t" "$@" > "$log" 2>&1
  local rc=$? dt=$(( $(now) - t0 ))
  if [ $rc = 0 ]; then record "$PART" "$name" ok "$dt" "" "$log"
  elif [ $rc = 124 ] || [ $rc = 137 ]; then record "$PART" "$name" "timed out" "$dt" "stopped at its share of ${t}s" "$log"
  elif [ $rc = 77 ]; then record "$PART" "$name" "skipped: $(grep -a 'skipped:' "$log" | tail -n 1 | sed 's/^.*skipped: *//')" "$dt" "" "$log"
  else record "$PART" "$name" "failed (exit $rc)" "$dt" "$(grep -av '^\s*$' "$log" | tail -n 2 | tr '\t\n|' '   ' | cut -c1-240)" "$log"
  fi
  return 0
}

# skip_step NAME REASON
skip_step() {
  if selected "$PART"; then record "$PART" "$1" "skipped: $2" 0 "" ""; else record "$PART" "$1" "skipped: not selected (--only $ONLY)" 0 "" ""; fi
}

status_of() { awk -F'\t' -v p="$1" -v s="$2" '$1 == p && $2 == s { print $3 }' "$STATUS" | tail -n 1; }

echo "evidence: budget ${BUDGET}s, results in $RES; kit: $kit_desc; python: $py_desc; card: $CARD_NAME"

if [ ${#KIT[@]} = 0 ]; then
  for p in info bench peers interop cuda memorization; do record "$p" "all" "skipped: no kit ($kit_desc)" 0 "" ""; done
else
# ---------------------------------------------------------------- (a) info
begin_part info 5 30
run_step info 1 1 -- "${KIT[@]}" info
[ -f "$RES/logs/info-info.log" ] && cp "$RES/logs/info-info.log" "$RES/info.txt"
end_part

# ---------------------------------------------------------------- (b) the kit's bench on the device
begin_part bench 30
if [ $SMOKE = 1 ]; then
  run_step bench-float32 3 5 -- "${KIT[@]}" bench --preset tiny --train-steps 5 --device cpu --dtype float32 --out "$RES/bench-$CARD-float32"
  skip_step bench-bfloat16 "bfloat16 is a GPU dtype (the kit's trainer refuses it on the CPU)"
  run_step layer-rotate-m 1 2 -- env MORA_ROTATION=rotate-m "${KIT[@]}" bench --preset tiny --ranks 8 --merge-shapes 64x64 --train-steps 0 --repeats 3 \
    --device cpu --dtype float32 --out "$RES/bench-$CARD-float32-rotate-m"
  run_step layer-rotate-input 1 1 -- env MORA_ROTATION=rotate-input "${KIT[@]}" bench --preset tiny --ranks 8 --merge-shapes 64x64 --train-steps 0 --repeats 3 \
    --device cpu --dtype float32 --out "$RES/bench-$CARD-float32-rotate-input"
  run_step launches 1 1 -- "${KIT[@]}" evidence launches --shapes 64x64 64x96 --ranks 2 8 --device cpu --out "$RES/launches-$CARD"
elif [ $CUDA = 1 ]; then
  run_step bench-bfloat16 8 18 -- "${KIT[@]}" bench --preset full --device cuda --dtype bfloat16 --out "$RES/bench-$CARD-bfloat16"
  run_step bench-float32 6 10 -- "${KIT[@]}" bench --preset full --no-reference-merge --device cuda --dtype float32 --out "$RES/bench-$CARD-float32"
  run_step layer-rotate-m 1 4 -- env MORA_ROTATION=rotate-m "${KIT[@]}" bench --preset tiny --shapes 4096x4096 --tokens 2048 --ranks 8 256 \
    --merge-shapes 64x64 --train-steps 0 --repeats 10 --device cuda --dtype bfloat16 --out "$RES/bench-$CARD-bfloat16-rotate-m"
  run_step layer-rotate-input 1 3 -- env MORA_ROTATION=rotate-input "${KIT[@]}" bench --preset tiny --shapes 4096x4096 --tokens 2048 --ranks 8 256 \
    --merge-shapes 64x64 --train-steps 0 --repeats 10 --device cuda --dtype bfloat16 --out "$RES/bench-$CARD-bfloat16-rotate-input"
  run_step launches 2 2 -- "${KIT[@]}" evidence launches --shapes 4096x4096 4096x11008 --ranks 8 256 --device cuda --dtype bfloat16 --out "$RES/launches-$CARD"
else
  for s in bench-bfloat16 bench-float32 layer-rotate-m layer-rotate-input launches; do skip_step "$s" "$NO_CUDA"; done
fi
end_part

# ---------------------------------------------------------------- (c) peers
begin_part peers 25
mkdir -p "$RES/peers"
run_step presets 1 20 -- "${KIT[@]}" evidence presets --out "$RES/peers/presets.json"
run_step layer-dump 1 19 -- "${KIT[@]}" evidence layer-dump --out "$RES/peers/layer-dump"
run_step eager-check 1 18 -- "${PYCMD[@]}" "$here/mora_eager.py" --check "$RES/peers/layer-dump" --out "$RES/peers/eager-check.csv"
if [ $SMOKE = 1 ]; then
  run_step eager-bench 3 17 -- "${PYCMD[@]}" "$here/mora_eager.py" --bench --presets "$RES/peers/presets.json" --preset tiny --repeats 3 --device cpu --dtypes float32 --out "$RES/peers/eager-$CARD.csv"
  run_step hf-step 3 14 -- "${PYCMD[@]}" "$here/hf_peft_step.py" --presets "$RES/peers/presets.json" --models tiny --methods lora full --dtype float32 --batch 4 --steps 5 --device cpu --out "$RES/peers/hf-train-$CARD.csv"
  run_step kit-step 5 11 -- "${KIT[@]}" evidence train-step --model tiny --batch 4 --steps 5 --device cpu --dtype float32 --out "$RES/peers"
  run_step python-syntax 1 6 -- "${PYCMD[@]}" -c 'import sys; [compile(open(f).read(), f, "exec") for f in sys.argv[1:]]; print("compiled:", *sys.argv[1:])' \
    "$here/mora_eager.py" "$here/hf_peft_step.py" "$here/interop_check.py" "$here/ratios.py" "$here/flops.py"
elif [ $CUDA = 1 ]; then
  run_step eager-bench 5 17 -- "${PYCMD[@]}" "$here/mora_eager.py" --bench --presets "$RES/peers/presets.json" --preset full --device cuda --dtypes bfloat16 float32 --out "$RES/peers/eager-$CARD.csv"
  run_step hf-step 6 12 -- "${PYCMD[@]}" "$here/hf_peft_step.py" --presets "$RES/peers/presets.json" --models tiny small medium laptop gpu-350m --methods lora full \
    --dtype bfloat16 --batch 32 --steps 20 --device cuda --out "$RES/peers/hf-train-$CARD.csv"
  run_step kit-step 6 6 -- bash -c 'out=$1; shift; for m in tiny small medium laptop gpu-350m; do "$@" evidence train-step --model $m --batch 32 --steps 20 --device cuda --dtype bfloat16 --out "$out" || exit $?; done' \
    _ "$RES/peers" "${KIT[@]}"
else
  for s in eager-bench hf-step kit-step; do skip_step "$s" "$NO_CUDA"; done
fi
end_part

# ---------------------------------------------------------------- (d) interop
begin_part interop 10
run_step export 1 4 -- "${KIT[@]}" evidence interop-export --out "$RES/interop"
run_step python-check 2 3 -- "${PYCMD[@]}" "$here/interop_check.py" --dir "$RES/interop" --device "$DEV" --fixtures "$repo/tests/data/interop"
if compgen -G "$RES/interop/peft_*" > /dev/null; then
  run_step kit-reads-peft 1 1 -- "${KIT[@]}" evidence interop-check --dir "$RES/interop" --device "$DEV"
else
  skip_step kit-reads-peft "no PEFT adapters to read ($(status_of interop python-check))"
  run_step kit-round-trip 1 1 -- "${KIT[@]}" evidence interop-check --dir "$RES/interop" --prefix kit_ --device "$DEV"
fi
end_part

# ---------------------------------------------------------------- (e) CUDA behaviour
begin_part cuda 12
mkdir -p "$RES/cuda/resume"
if [ $CUDA = 1 ]; then
  run_step oom 1 5 -- "${KIT[@]}" evidence oom --model laptop --batch 65536 --device cuda --dtype bfloat16 --out "$RES/cuda/oom.json"
  RUN=(evidence train-run --model laptop --method mora-rotation --batch 16 --steps 60 --checkpoint-every 20 --device cuda --dtype bfloat16)
else
  skip_step oom "$NO_CUDA (a CPU out-of-memory would take the machine's memory, not a device's)"
  RUN=(evidence train-run --model tiny --method mora-rotation --batch 4 --steps 30 --checkpoint-every 10 --device cpu --dtype float32)
fi
run_step uninterrupted 2 7 -- "${KIT[@]}" "${RUN[@]}" --out "$RES/cuda/resume/uninterrupted"
run_step killed-resumed 3 5 -- bash "$here/kill_resume.sh" "$RES/cuda/resume/killed-resumed" "${KIT[@]}" "${RUN[@]}"
run_step uninterrupted-again 2 2 -- "${KIT[@]}" "${RUN[@]}" --out "$RES/cuda/resume/uninterrupted-again"
run_step compare 1 1 -- "${KIT[@]}" evidence compare-runs --reference "$RES/cuda/resume/uninterrupted" \
  --runs "killed-resumed=$RES/cuda/resume/killed-resumed" "uninterrupted-again=$RES/cuda/resume/uninterrupted-again" --out "$RES/cuda/resume.md"
end_part

# ---------------------------------------------------------------- (f) memorisation at GPU scale
begin_part memorization 100
if [ $SMOKE = 1 ]; then
  run_step memorization 1 1 -- "${KIT[@]}" memorization --model tiny --methods lora mora-rotation mora-sharing full --ranks 2 8 --pairs 8 --pretrain-pairs 64 \
    --pretrain-steps 20 --steps 20 --batch-size 8 --seeds 0 --lr 0.005 --full-lr 0.001 --eval-points 2 --device cpu \
    --out "$RES/memorization-$CARD/runs" --figures "$RES/memorization-$CARD"
elif [ $CUDA = 1 ]; then
  # About 3,900 optimizer steps of the laptop model (pretraining 250, tuning 7 x 3 x 40, runs 7 x 2 x 200) and the
  # evaluations: about 3 minutes on an H100-class card by the estimate in bench/gpu/README.md; not started with less.
  run_step memorization 1 1 --min 150 -- "${KIT[@]}" memorization --model laptop --methods lora mora-rotation mora-sharing full --ranks 2 48 --pairs 512 \
    --pretrain-pairs 2048 --pretrain-steps 250 --steps 200 --batch-size 64 --seeds 0 1 --lr-grid 0.00316 0.01 0.0316 --full-lr-grid 0.0001 0.000316 0.001 \
    --tune-steps 40 --tune-seed 100 --eval-points 4 --device cuda --out "$RES/memorization-gpu-$CARD/runs" --figures "$RES/memorization-gpu-$CARD"
else
  skip_step memorization "$NO_CUDA"
fi
end_part
fi   # a kit was found

# ---------------------------------------------------------------- in the reserve: ratios, SUMMARY.md, packing
PART=ratios; PART_END=$(( START + BUDGET - 4 ))
layer_args=()
for dt in bfloat16 float32; do [ -f "$RES/bench-$CARD-$dt/layer.csv" ] && layer_args+=(--kit-layer "$dt=$RES/bench-$CARD-$dt/layer.csv"); done
if compgen -G "$RES/peers/*.csv" > /dev/null || [ ${#layer_args[@]} -gt 0 ]; then
  ONLY_SAVED=$ONLY; ONLY=""
  run_step ratios 1 2 -- "${PYCMD[@]}" "$here/ratios.py" "${layer_args[@]}" --eager "$RES/peers/eager-$CARD.csv" --kit-launches "$RES/launches-$CARD/launches.csv" \
    --formulation "$([ $CUDA = 1 ] && echo rotate-input || echo rotate-m)" --kit-train "$RES/peers/train-step.csv" --hf-train "$RES/peers/hf-train-$CARD.csv" \
    --card "$CARD_NAME" --out "$RES/ratios"
  ONLY=$ONLY_SAVED
else
  record ratios ratios "skipped: no kit or peer results to join" 0 "" ""
fi

WALL=$(elapsed)
{
  echo "# GPU evidence: summary"
  echo
  echo "Mode: $([ $SMOKE = 1 ] && echo 'cpu-smoke (tiny settings on the CPU)' || echo "GPU run (device $DEV)"). Card: $CARD_NAME (\`$CARD\`). Budget: ${BUDGET} s; wall time: ${WALL} s up to this summary."
  echo "Kit: \`$kit_desc\`. Python: $py_desc. Started $(date -u -d "@$START" '+%Y-%m-%d %H:%M:%S' 2>/dev/null) UTC on $(uname -sr), $(nproc --all) CPUs, OMP_NUM_THREADS=$OMP_NUM_THREADS."
  [ -n "$ONLY" ] && echo "Parts selected: $ONLY."
  echo
  echo "| part | step | status | seconds | detail | log |"
  echo "|---|---|---|---:|---|---|"
  while IFS=$'\t' read -r part step status secs detail log; do
    echo "| $part | $step | $status | $secs | ${detail#-} | ${log#-} |"
  done < "$STATUS"
  echo
  echo "## Skipped, and why"
  echo
  if awk -F'\t' '$3 ~ /^skipped/ { found = 1 } END { exit !found }' "$STATUS"; then
    awk -F'\t' '$3 ~ /^skipped/ { printf "- %s / %s: %s\n", $1, $2, substr($3, 10) }' "$STATUS"
  else echo "Nothing was skipped."; fi
  echo
  echo "## Not finished"
  echo
  if awk -F'\t' '$3 ~ /^(failed|timed out)/ { found = 1 } END { exit !found }' "$STATUS"; then
    awk -F'\t' '$3 ~ /^(failed|timed out)/ { printf "- %s / %s: %s after %s s. %s (log: %s)\n", $1, $2, $3, $4, ($5 == "-" ? "" : $5), $6 }' "$STATUS"
  else echo "Every step that ran finished."; fi
  echo
  echo "## Results"
  echo
  for f in info.txt bench-$CARD-bfloat16/bench.md bench-$CARD-float32/bench.md bench-$CARD-bfloat16-rotate-m/bench.md bench-$CARD-bfloat16-rotate-input/bench.md \
           bench-$CARD-float32-rotate-m/bench.md bench-$CARD-float32-rotate-input/bench.md launches-$CARD/launches.md peers/eager-check.csv \
           peers/eager-$CARD.csv peers/train-step.csv peers/hf-train-$CARD.csv ratios/ratios.md interop/interop.md interop/kit-check.md cuda/oom.json cuda/resume.md \
           memorization-$CARD/table.txt memorization-gpu-$CARD/table.txt; do
    [ -f "$RES/$f" ] && echo "- \`$f\`"
  done
  if [ -f "$RES/logs/peers-eager-check.log" ] && [ "$(status_of peers eager-check)" = ok ]; then
    echo; echo "Eager layer against the kit's: $(tail -n 1 "$RES/logs/peers-eager-check.log")"
  fi
  if [ -f "$RES/cuda/resume.md" ]; then echo; echo "### Kill and resume ($(echo "${RUN[*]}" | sed 's/^evidence //'))"; echo; cat "$RES/cuda/resume.md"; fi
  if [ -f "$RES/interop/kit-check.md" ]; then echo; sed 's/^# /### /' "$RES/interop/kit-check.md"; fi
} > "$RES/SUMMARY.md"

# Packing: everything but checkpoints, weights and arrays, into at most 7 parts of 15 MiB, beside SUMMARY.md.
if [ -z "$PACK" ]; then
  if [ -n "$DEVICE_OUT" ] && [ "$(cd "$DEVICE_OUT" 2>/dev/null && pwd)" != "$RES" ]; then PACK=$DEVICE_OUT; else PACK="$RES.pack"; fi
fi
mkdir -p "$PACK" && PACK=$(cd "$PACK" && pwd)
name="evidence-$CARD"
rm -f "$PACK/$name.tar.gz" "$PACK/$name.tar.gz.part"*
pack() {
  ( cd "$(dirname "$RES")" && tar --exclude='*/checkpoints' --exclude='*.safetensors' --exclude='*.npy' --exclude='*.tmp' "$@" -czf - "$(basename "$RES")" ) \
    | split -b 15M -d -a 1 - "$PACK/$name.tar.gz.part"
}
pack
if [ "$(ls "$PACK/$name.tar.gz.part"* 2>/dev/null | wc -l)" -gt 7 ]; then
  rm -f "$PACK/$name.tar.gz.part"*
  pack --exclude='*/runs' --exclude='*/logs'
  echo "- (packing left out the runs/ and logs/ folders to stay within 7 parts)" >> "$RES/SUMMARY.md"
fi
if [ "$(ls "$PACK/$name.tar.gz.part"* 2>/dev/null | wc -l)" = 1 ]; then mv "$PACK/$name.tar.gz.part0" "$PACK/$name.tar.gz"; fi
{ echo; echo "## Packed"; echo
  echo "Into \`$PACK\`: $(cd "$PACK" && ls "$name".tar.gz* | tr '\n' ' ')(unpack with \`cat $name.tar.gz* | tar -xzf -\`: checkpoints, weights and .npy arrays left out). Wall time at the end: $(elapsed) s."
} >> "$RES/SUMMARY.md"
cp "$RES/SUMMARY.md" "$PACK/SUMMARY.md"
# When the results folder sits inside the pack folder, move it out, so that only the packed files remain there.
case "$RES/" in "$PACK"/*)
  moved="${TMPDIR:-/tmp}/$(basename "$RES")-tree-$$"
  mv "$RES" "$moved" && echo "(the unpacked results were moved to $moved so that $PACK holds only the packed files)" | tee -a "$PACK/SUMMARY.md";;
esac
echo "done in $(elapsed) s: $PACK/SUMMARY.md"
exit 0
