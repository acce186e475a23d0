#!/usr/bin/env bash
# resil_health_flap with two workers: one health state, one prober (worker
# 0), the other worker taking its decisions: still one probe per interval
# per destination and no state change for a destination that answers every
# other probe.
WORKERS=2 exec bash "$(dirname "$0")/resil_health_flap.sh"
