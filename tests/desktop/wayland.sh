#!/usr/bin/env bash
# wayland.sh - a real, headless Wayland desktop for end-to-end tests of Port Watch's tray app: the
# Wayland twin of session.sh. (The project's own copy, adapted from the team's shared recipe;
# tests/desktop/wayland_harness.py drives it.)
#
# What it starts (all on this machine, nothing on the network):
#   a private D-Bus session bus (+ dbus-monitor logging it) -> sway (wlroots compositor, headless
#   backend, pixman renderer, no Xwayland) -> mako (org.freedesktop.Notifications) -> a tray host:
#   waybar with only its `tray` module (it owns org.kde.StatusNotifierWatcher and registers as the
#   StatusNotifierHost; default), or none at all (GNOME without the AppIndicator extension)
#   -> a tiny virtual-pointer client (stdlib Python, wlr-virtual-pointer protocol), so that the
#   seat has a pointer and clicks can be sent.
#
# Debian packages it needs (install once, as root):
#   apt-get install -y --no-install-recommends sway waybar mako-notifier grim util-linux dbus procps
#   (swaymsg comes with sway, setpriv with util-linux; the app under test needs Qt's wayland plugin,
#   which PySide6 ships)
#
# Use (STATE is the session's directory; one directory = one session, so several can run at once):
#   STATE=/tmp/w1 wayland.sh up [waybar|none]     start; prints the env file to source
#   . "$STATE/env"                                WAYLAND_DISPLAY (an absolute socket path), SWAYSOCK,
#                                                 DBUS_SESSION_BUS_ADDRESS, HOME, XDG_*, QT_QPA_PLATFORM
#   STATE=/tmp/w1 wayland.sh shot NAME [DIR]      screenshot of the whole output (grim) -> DIR/NAME.png
#   STATE=/tmp/w1 wayland.sh pixel X Y            colour of one pixel, e.g. srgb(34,197,94)
#   STATE=/tmp/w1 wayland.sh click X Y [left|right|middle]   a real pointer click at X,Y
#   STATE=/tmp/w1 wayland.sh move X Y             move the pointer there
#   STATE=/tmp/w1 wayland.sh down                 stop everything it started (by PID)
#
# What a test can observe (seen on Debian 12: sway 1.7, waybar 0.9.17, mako 1.7.1; PySide6 6.11):
#   - One output HEADLESS-1, 1024x768 (WL_SIZE=WxH to change). waybar is a 32 px grey (#c0c0c0) bar
#     at the top holding only the tray; a 24 px icon spans about x=2..26, y=4..28. Headless sway
#     draws the pointer into screenshots: it is parked in the bottom-right corner.
#   - QSystemTrayIcon.isSystemTrayAvailable() is True with waybar, False with `none`.
#   - showMessage()/Notify calls are logged in $STATE/dbus-monitor.log; mako draws a notification
#     at the top right (background #fff8c4) for its expire_timeout; a left click on it invokes the
#     "default" action, and mako first sends ActivationToken (notification spec 1.2) with an
#     xdg-activation token for the app to use.
#   - New windows are tiled below the bar with a sway title bar; `swaymsg -t get_tree` lists them:
#     name = window title, app_id = QGuiApplication.desktopFileName(), pid, focused, rect.
#   - Right click on the icon: waybar calls dbusmenu AboutToShow and draws the exported menu as a
#     GTK popup under the icon; clicking an item triggers its QAction. Left click: Activate.
#   - focus_on_window_activation is `focus` (sway's default only marks the window urgent): like
#     GNOME and KDE, a window that asks with an activation token is brought to the front.
#   - An app still running at `down` dies with "The Wayland connection broke": stop it first.
#   - sway refuses to run as root (it checks that root cannot be regained), so under root it runs
#     as SWAY_UID (default 65534, nobody) with its own 0700 runtime dir $STATE/sway; everything else
#     runs as the caller and reaches sway through WAYLAND_DISPLAY as an absolute path. STATE must
#     therefore be reachable by that uid (anywhere under /tmp is). Not root: sway runs as the caller.
set -u
STATE=${STATE:-${TMPDIR:-/tmp}/desktop-wayland}
WL_SIZE=${WL_SIZE:-1024x768}
SWAY_UID=${SWAY_UID:-65534}
[ "$(id -u)" = 0 ] || SWAY_UID=$(id -u)   # only root has to (and can) hand sway to another user
BAR_HEIGHT=32

log() { echo "[wayland $(date +%T)] $*" >&2; }
remember() { echo "$2" >> "$STATE/pids"; echo "$1 $2" >> "$STATE/pids.named"; }
wait_for() { local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do [ "$SECONDS" -ge "$end" ] && return 1; sleep 0.1; done; }
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }   # zombies are dead
bus_has() { dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
            org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q "boolean true"; }
host_registered() { dbus-send --session --print-reply --dest=org.kde.StatusNotifierWatcher \
  /StatusNotifierWatcher org.freedesktop.DBus.Properties.Get string:org.kde.StatusNotifierWatcher \
  string:IsStatusNotifierHostRegistered 2>/dev/null | grep -q "boolean true"; }
pointer_ready() { swaymsg -t get_seats 2>/dev/null | grep -q '"type": "pointer"'; }
owned() {   # every process started under this session's env (also bus-activated ones)
  local f; for f in /proc/[0-9]*/environ; do
    grep -qzxF "DESKTOP_SESSION_OWNER=$STATE" "$f" 2>/dev/null && { f=${f#/proc/}; echo "${f%/environ}"; }
  done; }
descendants() { local p c; for p in "$@"; do
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do echo "$c"; descendants "$c"; done; done; }
fail() { log "$*"; for f in "$STATE"/*.log; do [ -s "$f" ] && { log "--- $f"; tail -n 20 "$f" >&2; }; done
  return 1; }

write_configs() {
  local w=${WL_SIZE%x*} h=${WL_SIZE#*x}
  cat > "$STATE/sway.conf" <<EOF
xwayland disable
swaynag_command -
output HEADLESS-1 resolution ${w}x${h} position 0,0
default_border normal 2
focus_follows_mouse no
focus_on_window_activation focus
EOF
  mkdir -p "$XDG_CONFIG_HOME/waybar" "$XDG_CONFIG_HOME/mako"
  cat > "$XDG_CONFIG_HOME/waybar/config" <<EOF
{ "layer": "top", "position": "top", "height": $BAR_HEIGHT, "spacing": 4,
  "modules-left": ["tray"], "modules-center": [], "modules-right": [],
  "tray": { "icon-size": 24, "spacing": 8 } }
EOF
  cat > "$XDG_CONFIG_HOME/waybar/style.css" <<'EOF'
* { font-family: "DejaVu Sans", sans-serif; font-size: 13px; border: none; border-radius: 0; }
window#waybar { background: #c0c0c0; color: #000000; }
#tray { padding: 0 2px; }
EOF
  cat > "$XDG_CONFIG_HOME/mako/config" <<'EOF'
anchor=top-right
default-timeout=0
ignore-timeout=0
background-color=#fff8c4
text-color=#000000
border-color=#333333
font=DejaVu Sans 11
EOF
  # A virtual pointer (zwlr_virtual_pointer_v1) that stays connected: the headless seat has no
  # input device, so without it clients never get a wl_pointer. Reads "move X Y" / "press BTN" /
  # "release BTN" lines from a FIFO.
  cat > "$STATE/vpointer.py" <<'EOF'
import os, select, socket, struct, sys, time
path = os.environ["WAYLAND_DISPLAY"]
if not path.startswith("/"): path = os.path.join(os.environ["XDG_RUNTIME_DIR"], path)
W, H = (int(v) for v in sys.argv[2].split("x"))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
def send(obj, op, payload=b""): s.sendall(struct.pack("<II", obj, ((8 + len(payload)) << 16) | op) + payload)
def wstr(t): b = t.encode() + b"\0"; return struct.pack("<I", len(b)) + b + b"\0" * (-len(b) % 4)
buf = b""
def pump(want_cb=None):
    global buf
    found = {}
    while True:
        data = s.recv(65536)
        if not data: sys.exit("compositor went away")
        buf += data
        while len(buf) >= 8:
            obj, so = struct.unpack("<II", buf[:8]); size, op = so >> 16, so & 0xffff
            if len(buf) < size: break
            body, buf = buf[8:size], buf[size:]
            if obj == 1 and op == 0: sys.exit("wayland error: %r" % body)
            if obj == 2 and op == 0:
                name, n = struct.unpack("<II", body[:8]); iface = body[8:8 + n - 1].decode()
                found[iface] = name
            if want_cb is not None and obj == want_cb and op == 0: return found
send(1, 1, struct.pack("<I", 2)); send(1, 0, struct.pack("<I", 3))      # get_registry(2); sync(3)
g = pump(want_cb=3)
if "zwlr_virtual_pointer_manager_v1" not in g: sys.exit("compositor lacks zwlr_virtual_pointer_manager_v1")
send(2, 0, struct.pack("<I", g["zwlr_virtual_pointer_manager_v1"]) + wstr("zwlr_virtual_pointer_manager_v1")
     + struct.pack("<II", 1, 4))                                          # bind -> 4
send(4, 0, struct.pack("<II", 0, 5))                                      # create_virtual_pointer(seat=default) -> 5
ms = lambda: int(time.monotonic() * 1000) & 0xffffffff
fifo = os.open(sys.argv[1], os.O_RDWR); pending = b""
print("ready", flush=True)
while True:
    r, _, _ = select.select([s, fifo], [], [])
    if s in r:
        d = s.recv(65536)
        if not d: sys.exit(0)
    if fifo in r:
        pending += os.read(fifo, 4096)
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1); a = line.decode().split()
            if not a: continue
            if a[0] == "move": send(5, 1, struct.pack("<IIIII", ms(), int(a[1]), int(a[2]), W, H))
            elif a[0] in ("press", "release"): send(5, 2, struct.pack("<III", ms(), int(a[1]), a[0] == "press"))
            send(5, 4, struct.pack("<I", ms()))                           # frame
EOF
}

up() {
  local host=${1:-waybar}
  case $host in waybar|none) ;; *) log "unknown tray host $host (waybar|none)"; return 2 ;; esac
  [ -e "$STATE/pids" ] && { log "already up ($STATE/pids exists); run down first"; return 1; }
  mkdir -p "$STATE/home" "$STATE/runtime" "$STATE/sway"; chmod 755 "$STATE"; chmod 700 "$STATE/runtime"
  [ "$(id -u)" = 0 ] && chown "$SWAY_UID:$SWAY_UID" "$STATE/sway"; chmod 700 "$STATE/sway"
  : > "$STATE/pids"; : > "$STATE/pids.named"; echo "$host" > "$STATE/host"
  rm -f "$STATE/sway/"* "$STATE/pointer.fifo"
  export HOME=$STATE/home XDG_CONFIG_HOME=$STATE/home/.config XDG_DATA_HOME=$STATE/home/.local/share \
         XDG_CACHE_HOME=$STATE/home/.cache XDG_STATE_HOME=$STATE/home/.local/state \
         XDG_RUNTIME_DIR=$STATE/runtime NO_AT_BRIDGE=1 GTK_A11Y=none XDG_SESSION_TYPE=wayland \
         XDG_CURRENT_DESKTOP=sway GDK_BACKEND=wayland
  export DESKTOP_SESSION_OWNER=$STATE   # marks what this session starts (not in $STATE/env)
  unset DISPLAY XAUTHORITY SESSION_MANAGER
  write_configs; chmod 644 "$STATE/sway.conf"
  local as_sway=()
  [ "$(id -u)" = 0 ] && as_sway=(setpriv --reuid="$SWAY_UID" --regid="$SWAY_UID" --clear-groups)
  "${as_sway[@]}" test -r "$STATE/sway.conf" \
    || { log "uid $SWAY_UID cannot read $STATE/sway.conf: put STATE under a world-searchable dir (e.g. /tmp)"; return 1; }
  # A private bus: never let anything autolaunch one (it would outlive the test).
  dbus-daemon --session --fork --address="unix:path=$STATE/bus" --print-pid=1 > "$STATE/bus.pid" \
    2> "$STATE/dbus.log" || { fail "dbus-daemon did not start"; return 1; }
  remember dbus "$(cat "$STATE/bus.pid")"; export DBUS_SESSION_BUS_ADDRESS="unix:path=$STATE/bus"
  dbus-monitor "interface='org.freedesktop.Notifications'" "interface='org.kde.StatusNotifierWatcher'" \
    "interface='org.kde.StatusNotifierItem'" "interface='com.canonical.dbusmenu'" \
    > "$STATE/dbus-monitor.log" 2>&1 &
  remember dbus-monitor $!
  # sway refuses to start as real root: run it as SWAY_UID, with only the variables it needs.
  "${as_sway[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$STATE/sway" XDG_RUNTIME_DIR="$STATE/sway" WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 \
    WLR_RENDERER=pixman WLR_HEADLESS_OUTPUTS=1 DESKTOP_SESSION_OWNER="$STATE" \
    sway -c "$STATE/sway.conf" > "$STATE/sway.log" 2>&1 &
  local swaypid=$!; remember sway $swaypid
  export WAYLAND_DISPLAY=$STATE/sway/wayland-1 SWAYSOCK=$STATE/sway/sway-ipc.$SWAY_UID.$swaypid.sock
  wait_for 15 swaymsg -t get_version || { fail "sway did not start"; return 1; }
  [ -S "$WAYLAND_DISPLAY" ] || { fail "no Wayland socket at $WAYLAND_DISPLAY"; return 1; }
  mako > "$STATE/mako.log" 2>&1 &
  remember mako $!
  wait_for 10 bus_has org.freedesktop.Notifications || { fail "no notification daemon"; return 1; }
  if [ "$host" = waybar ]; then
    waybar > "$STATE/waybar.log" 2>&1 &
    remember waybar $!
    wait_for 15 host_registered || { fail "no StatusNotifierWatcher/Host from waybar"; return 1; }
  fi
  mkfifo "$STATE/pointer.fifo"
  python3 "$STATE/vpointer.py" "$STATE/pointer.fifo" "$WL_SIZE" > "$STATE/vpointer.log" 2>&1 &
  remember vpointer $!; echo $! > "$STATE/vpointer.pid"
  wait_for 10 pointer_ready || { fail "virtual pointer did not attach"; return 1; }
  # Park the arrow in the bottom-right corner: headless sway draws the cursor into screenshots.
  printf 'move %d %d\n' $((${WL_SIZE%x*} - 1)) $((${WL_SIZE#*x} - 1)) > "$STATE/pointer.fifo"
  export QT_QPA_PLATFORM=wayland TRAY_HOST=$host DESKTOP_STATE=$STATE BAR_HEIGHT
  [ "$host" = none ] && BAR_HEIGHT=0
  local v; { printf 'unset DISPLAY; export'; for v in WAYLAND_DISPLAY SWAYSOCK DBUS_SESSION_BUS_ADDRESS \
      HOME XDG_CONFIG_HOME XDG_DATA_HOME XDG_CACHE_HOME XDG_STATE_HOME XDG_RUNTIME_DIR NO_AT_BRIDGE \
      GTK_A11Y XDG_SESSION_TYPE XDG_CURRENT_DESKTOP GDK_BACKEND QT_QPA_PLATFORM TRAY_HOST DESKTOP_STATE \
      BAR_HEIGHT; do printf ' %s=%q' "$v" "${!v}"; done; echo; } > "$STATE/env"
  log "up ($host): sway pid $swaypid, $WL_SIZE"; echo "$STATE/env"
}

down() {
  [ -e "$STATE/pids" ] || { log "nothing to stop"; return 0; }
  local pids all p end
  pids=$(tac "$STATE/pids")
  all=$(printf '%s\n' $pids $(descendants $pids) $(owned) | awk 'NF && !seen[$0]++')
  for p in $all; do kill "$p" 2>/dev/null; done
  end=$((SECONDS + 3))
  for p in $all; do while alive "$p" && [ "$SECONDS" -lt "$end" ]; do sleep 0.05; done; done
  for p in $all; do alive "$p" && { log "killing $p hard"; kill -9 "$p" 2>/dev/null; }; done
  rm -f "$STATE/pids" "$STATE/pids.named" "$STATE/env" "$STATE/bus" "$STATE/bus.pid" \
        "$STATE/pointer.fifo" "$STATE/vpointer.pid"
  rm -rf "$STATE/sway"
  log "down"
}

shot() { # shellcheck disable=SC1091
  . "$STATE/env"; local dir=${2:-$STATE}; mkdir -p "$dir"; grim "$dir/$1.png" && echo "$dir/$1.png"; }
pixel() { # shellcheck disable=SC1091
  . "$STATE/env"; grim -g "$1,$2 1x1" -t ppm - | tail -c 3 | od -An -tu1 |
    awk '{printf "srgb(%d,%d,%d)\n",$1,$2,$3}'; }
pointer() {   # write lines to the virtual pointer
  kill -0 "$(cat "$STATE/vpointer.pid" 2>/dev/null)" 2>/dev/null || { log "virtual pointer not running"; return 1; }
  printf '%s\n' "$@" > "$STATE/pointer.fifo"; }
click() { local b
  case ${3:-left} in left) b=272 ;; right) b=273 ;; middle) b=274 ;; *) b=$3 ;; esac   # BTN_* codes
  pointer "move $1 $2" "press $b" || return 1; sleep 0.1
  pointer "release $b"; sleep 0.2; }

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  shot) [ $# -ge 2 ] || { echo "usage: $0 shot NAME [DIR]" >&2; exit 2; }; shot "$2" "${3:-}" ;;
  pixel) [ $# -ge 3 ] || { echo "usage: $0 pixel X Y" >&2; exit 2; }; pixel "$2" "$3" ;;
  click) [ $# -ge 3 ] || { echo "usage: $0 click X Y [left|right|middle]" >&2; exit 2; }; shift; click "$@" ;;
  move) [ $# -ge 3 ] || { echo "usage: $0 move X Y" >&2; exit 2; }; pointer "move $2 $3" ;;
  *) echo "usage: $0 up [waybar|none] | down | shot NAME [DIR] | pixel X Y | click X Y [BUTTON] | move X Y   (STATE=$STATE)" >&2; exit 2 ;;
esac
