#!/usr/bin/env bash
# resil_health_down_up with two workers and a caller that uses a socket per
# call (SIPp -t un), so both workers route calls: worker 0 probes and marks
# zone-a down and up, the other worker follows its verdict at once (no new
# call sent to the silent server on either), logged and counted once.
WORKERS=2 UAC_ARGS="-t un -max_socket 1000" exec bash "$(dirname "$0")/resil_health_down_up.sh"
