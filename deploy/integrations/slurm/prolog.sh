#!/bin/sh
# Slurm Prolog (runs on the compute node before a job starts): tell gpufleet which GPUs of this
# node the job has, so its GPU-minutes are attributed to the job and its account (tenant).
# Install: Prolog=/etc/slurm/gpufleet-prolog.sh in slurm.conf; GPUFLEET_KAFKA_BOOTSTRAP set in
# /etc/default/gpufleet (or the environment slurmd runs with). A failure here never blocks the
# job: the event is best effort, the job runs either way.
[ -f /etc/default/gpufleet ] && . /etc/default/gpufleet
GPUS="${SLURM_JOB_GPUS:-${CUDA_VISIBLE_DEVICES:-}}"
NODE="${SLURMD_NODENAME:-$(hostname -s)}"
set -- --job "slurm-${SLURM_JOB_ID}" --state started --node "$NODE" --source slurm \
    --tenant "${SLURM_JOB_ACCOUNT:-${SLURM_JOB_USER:-default}}"
[ -n "$GPUS" ] && set -- "$@" --gpus "$GPUS"
timeout 10 gpufleet publish-event "$@" >/dev/null 2>&1 || logger -t gpufleet "prolog: event not sent for job ${SLURM_JOB_ID}"
exit 0
