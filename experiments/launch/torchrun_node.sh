#!/usr/bin/env bash
# One experiment on one node with stage 2 (the LLM fine-tune) started by torchrun instead of
# Lightning's own launcher; everything else runs as in `lm-latent run`.
#
#   experiments/launch/torchrun_node.sh EXPERIMENT.yaml [dotted.overrides ...]
#   NPROC_PER_NODE=4 RUN_DIR=runs/my_run experiments/launch/torchrun_node.sh EXPERIMENT.yaml
#
# Run from the repository root. Steps (docs/LAUNCH.md):
#   1. experiments/launch/prepare_run.py: data, tokenizer, codebook fit, encode (skipped when done) and
#      each strategy's stage-2 config <run>/mixed/<strategy>/config.yaml.
#   2. per strategy: torchrun --standalone --nproc-per-node G -m lm_latent.cli mixed fit --config ...
#      --trainer.devices G (Lightning's TorchElasticEnvironment takes the ranks from torchrun and
#      checks that devices x num_nodes equals torchrun's world size).
#   3. `lm-latent run` with the same arguments: adopts the checkpoints, evaluates, writes the results.
# Rerunning the same command after a failure continues where it stopped.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 EXPERIMENT.yaml [dotted.overrides ...]" >&2
    exit 2
fi
EXPERIMENT=$1
shift
for arg in "$@"; do
    if [ "$arg" = "--force" ]; then
        # Passed on to the final `lm-latent run` it would retrain what step 2 just trained.
        echo "--force is not supported here; delete the run folder (or the stage's folder) instead" >&2
        exit 2
    fi
done
PYTHON=${PYTHON:-python}
RUN_DIR=${RUN_DIR:-runs/$(basename "${EXPERIMENT%.*}")}
NPROC=${NPROC_PER_NODE:-$(nvidia-smi -L | wc -l)}

# Inside a SLURM allocation Lightning would take the single-process steps for srun tasks; the job
# name "interactive" turns its SLURM detection off (torchrun's own environment wins anyway in step 2).
single() { SLURM_JOB_NAME=interactive "$@"; }

single "$PYTHON" experiments/launch/prepare_run.py "$EXPERIMENT" --out "$RUN_DIR" "$@"

while IFS=$'\t' read -r strategy config status; do
    case $status in
        done) echo "-- $strategy: already trained"; continue ;;
        resume) resume=(--ckpt_path last) ;;
        *) resume=() ;;
    esac
    echo "-- $strategy: $config ($status) on $NPROC GPU(s)"
    "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" \
        -m lm_latent.cli mixed fit --config "$config" --trainer.num_nodes 1 --trainer.devices "$NPROC" \
        ${resume[@]+"${resume[@]}"}
done < "$RUN_DIR/stage2_plan.tsv"

single "$PYTHON" -m lm_latent.cli run "$EXPERIMENT" --out "$RUN_DIR" "$@"
