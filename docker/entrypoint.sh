#!/bin/sh
# ENTRYPOINT of the specllm CUDA image: the hardware preflight, then the command (default CMD:
# make reproduce VENV=/opt/venv). The profile checked is the command's PROFILE=... argument, else
# $PROFILE (the image sets paper). A failed preflight exits with status 2 before the command runs,
# so nothing is written. Bypass it with `docker run --entrypoint bash ...`.
set -eu
profile="${PROFILE:-paper}"
for arg in "$@"; do
    case "$arg" in
        PROFILE=*) profile="${arg#PROFILE=}" ;;
    esac
done
if [ "$#" -eq 0 ]; then
    set -- make reproduce VENV=/opt/venv
fi
python -m specllm.preflight --profile "$profile"
exec "$@"
