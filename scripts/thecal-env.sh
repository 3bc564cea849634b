# Shared by scripts/demo and tests: a private system-like D-Bus with the project's policy.
# Usage: source scripts/thecal-env.sh; thecal_private_bus DIR  -> sets THECAL_BUS, THECAL_BUS_PID
thecal_private_bus() {
  local dir=$1 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  sed -e "s|@SOCKET@|$dir/bus|" -e "s|@POLICY@|$root/packaging/org.thecal.Pump1.conf|" \
    "$root/scripts/test-bus.conf.in" > "$dir/bus.conf"
  dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile --print-address=3 3>"$dir/bus.address" &
  THECAL_BUS_PID=$!
  for _ in $(seq 100); do [ -s "$dir/bus.address" ] && break; sleep 0.05; done
  THECAL_BUS=$(head -n1 "$dir/bus.address")
  [ -n "$THECAL_BUS" ] || { echo "private dbus-daemon did not start" >&2; return 1; }
}

# thecal_sim_config SRC DIR -> writes DIR/thecald.yaml: the sim board file with paths in DIR
thecal_sim_config() {
  local src=$1 dir=$2 root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  sed -e "s|^\(  prescription:\).*|\1 $dir/prescription.yaml|" \
      -e "s|^\(  drugs:\).*|\1 $root/config/drugs.yaml|" \
      -e "s|^\(  state:\).*|\1 $dir/state|" "$src" > "$dir/thecald.yaml"
  mkdir -p "$dir/state"
  chmod 0644 "$dir/thecald.yaml"
}
