#!/bin/sh
# Slurm Epilog (runs on the compute node after a job ends): the job no longer holds its GPUs.
# Install: Epilog=/etc/slurm/gpufleet-epilog.sh in slurm.conf. Never fails the node.
[ -f /etc/default/gpufleet ] && . /etc/default/gpufleet
NODE="${SLURMD_NODENAME:-$(hostname -s)}"
STATE=succeeded
case "${SLURM_JOB_EXIT_CODE:-0}" in 0|0:0) ;; *) STATE=failed ;; esac
set -- --job "slurm-${SLURM_JOB_ID}" --state "$STATE" --node "$NODE" --source slurm \
    --tenant "${SLURM_JOB_ACCOUNT:-${SLURM_JOB_USER:-default}}"
[ -n "${SLURM_JOB_EXIT_CODE:-}" ] && set -- "$@" --reason "exit ${SLURM_JOB_EXIT_CODE}"
timeout 10 gpufleet publish-event "$@" >/dev/null 2>&1 || logger -t gpufleet "epilog: event not sent for job ${SLURM_JOB_ID}"
exit 0
