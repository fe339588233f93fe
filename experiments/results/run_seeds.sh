#!/usr/bin/env bash
# Run one experiment for several seeds, two seeds at a time with one thread each (the 2-core CPU
# machine of RESULTS.md), then print the mean and spread over the seeds and draw OUT/accuracy_vs_tokens.png.
#
#   bash experiments/results/run_seeds.sh experiments/results/prontoqa_cpu.yaml runs/results/prontoqa 0 1 2
#
# Each seed is an ordinary `lm-latent run` folder (OUT/seed<N>): rerunning this script skips finished
# stages and resumes interrupted ones. Logs go to OUT/seed<N>.log. Environment: PARALLEL (seeds at a
# time, default 2; 1 on a single GPU), LM_LATENT (the command, default `lm-latent`), OMP_NUM_THREADS.
set -euo pipefail
experiment=$1 out=$2
shift 2
seeds=("${@:-0 1 2}")
parallel=${PARALLEL:-2}
lm_latent=${LM_LATENT:-lm-latent}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
mkdir -p "$out"

pids=() failed=0
for seed in ${seeds[@]}; do
  "$lm_latent" run "$experiment" --out "$out/seed$seed" seed="$seed" >"$out/seed$seed.log" 2>&1 &
  pids+=($!)
  if (( ${#pids[@]} >= parallel )); then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if (( failed )); then
  echo "a seed failed: see $out/seed*.log (rerun this command to resume)" >&2
  exit 1
fi
dirs=()
for seed in ${seeds[@]}; do dirs+=("$out/seed$seed"); done
"$lm_latent" summarize "${dirs[@]}" --json "$out/summary.json" --plot "$out/accuracy_vs_tokens.png" | tee "$out/summary.md"
