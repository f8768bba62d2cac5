#!/usr/bin/env bash
# session.sh - a real, headless Linux desktop for end-to-end tests of Port Watch's tray app.
# (The project's own copy, adapted from the team's shared recipe; tests/desktop/harness.py drives it.)
#
# What it starts (all on this machine, nothing on the network):
#   Xvfb (X server) -> a private D-Bus session bus (+ dbus-monitor logging it) -> dunst (freedesktop
#   notification daemon) -> a tray host: xfce4-panel's systray plugin (StatusNotifierItem; default)
#   or trayer (old XEmbed tray: Qt then draws its own balloon instead of a D-Bus notification).
#
# Debian packages it needs (install once, as root):
#   apt-get install -y --no-install-recommends xvfb x11-utils xdotool imagemagick \
#     dbus dbus-x11 dunst xfce4-panel trayer procps
#   (+ for a Qt xcb app: libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 ...)
#
# Use (STATE is the session's directory; one directory = one session, so several can run at once):
#   STATE=/tmp/d1 session.sh up [xfce|trayer]   start; prints the env file to source
#   . "$STATE/env"                              DISPLAY, DBUS_SESSION_BUS_ADDRESS, HOME, XDG_* ...
#   STATE=/tmp/d1 session.sh shot NAME [DIR]    screenshot of the whole screen -> DIR/NAME.png (DIR=$STATE)
#   STATE=/tmp/d1 session.sh pixel X Y          colour of one pixel, e.g. srgb(34,197,94)
#   STATE=/tmp/d1 session.sh down               stop everything it started (by PID, then their children)
#   STATE=/tmp/d1 session.sh kill dunst|xfce4-panel    kill one part by PID (SIGTERM), wait for its end
#   STATE=/tmp/d1 session.sh start dunst|xfce4-panel   start that part again, wait until it serves
# NOTIFY_ACTIVATION=no at `up`: the bus cannot start a notification server by D-Bus activation (its
# own service folder holds every session service of the system except notification servers), so a
# killed dunst stays gone until `start dunst`.
# DNUM=N picks the display number; by default Xvfb picks a free one itself (-displayfd), race-free.
#
# What a test can observe (seen on Debian 12, PySide6 6.12):
#   - QSystemTrayIcon.isSystemTrayAvailable() is True with QT_QPA_PLATFORM=xcb (False under offscreen).
#   - xfce: the panel is a 32 px strip across the top, background rgb(191,191,191); the first tray
#     icon occupies about x=1..22, y=5..26 (centre ~12,16). `xdotool mousemove 12 16 click 3` opens
#     the app's context menu, drawn by the panel (a window of class wrapper-2.0 with
#     _NET_WM_WINDOW_TYPE_POPUP_MENU) from the menu the app exports over com.canonical.dbusmenu.
#   - xfce: showMessage() becomes an org.freedesktop.Notifications.Notify call, logged in
#     $STATE/dbus-monitor.log; dunst's org.dunstproject.cmd0 interface (displayedLength,
#     NotificationListHistory) tells what dunst showed: `dunstctl count displayed` works;
#     `dunstctl history` also needs busctl (package systemd), so harness.py calls dbus-send itself.
#     While the message shows, Qt sets the item's status to NeedsAttention and the panel draws the
#     attention icon (a light bulb) instead of the app's icon, for the message's duration.
#   - trayer: the icon is a small X window (22x30) of the app's class (xdotool search --onlyvisible
#     --class NAME), at the right edge; showMessage() draws a Qt balloon window (type TOOLTIP) of that class
#     and right-click opens a QMenu window of that class.
#   - Without a window manager, new windows open undecorated at 0,0.
set -u
STATE=${STATE:-${TMPDIR:-/tmp}/desktop-session}
DNUM=${DNUM:-}

log() { echo "[desktop $(date +%T)] $*" >&2; }
remember() { echo "$2" >> "$STATE/pids"; echo "$1 $2" >> "$STATE/pids.named"; }
wait_for() { local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do [ "$SECONDS" -ge "$end" ] && return 1; sleep 0.1; done; }
alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${s#Z}" = "$s" ]; }   # zombies are dead
bus_has() { dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
            org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q "boolean true"; }
has_window() { xdotool search --onlyvisible "$@" >/dev/null 2>&1; }
owned() {   # every process started under this session's env (also daemonized ones like xfconfd)
  local f; for f in /proc/[0-9]*/environ; do
    grep -qzxF "DESKTOP_SESSION_OWNER=$STATE" "$f" 2>/dev/null && { f=${f#/proc/}; echo "${f%/environ}"; }
  done; }
descendants() { local p c; for p in "$@"; do
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do echo "$c"; descendants "$c"; done; done; }
fail() { log "$*"; for f in "$STATE"/*.log; do [ -s "$f" ] && { log "--- $f"; tail -n 20 "$f" >&2; }; done
  return 1; }

write_xfce_config() {   # one panel across the top, holding only the systray plugin
  local d="$STATE/home/.config/xfce4/xfconf/xfce-perchannel-xml"; mkdir -p "$d"
  cat > "$d/xfce4-panel.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="32"/>
      <property name="background-style" type="uint" value="1"/>
      <property name="background-rgba" type="array">
        <value type="double" value="0.75"/><value type="double" value="0.75"/>
        <value type="double" value="0.75"/><value type="double" value="1"/>
      </property>
      <property name="plugin-ids" type="array"><value type="int" value="1"/></property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
EOF
}

start_xvfb() {
  if [ -n "$DNUM" ]; then
    Xvfb ":$DNUM" -screen 0 1024x768x24 -nolisten tcp > "$STATE/xvfb.log" 2>&1 &
    remember xvfb $!
  else   # Xvfb chooses a free display and writes its number once it accepts connections
    Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3> "$STATE/display" > "$STATE/xvfb.log" 2>&1 &
    remember xvfb $!
    local pid=$! end=$((SECONDS + 10))
    until [ -s "$STATE/display" ]; do
      alive "$pid" && [ "$SECONDS" -lt "$end" ] || { fail "Xvfb did not start"; return 1; }
      sleep 0.05
    done
    DNUM=$(tr -dc 0-9 < "$STATE/display")
  fi
  export DISPLAY=:$DNUM
  wait_for 10 xdpyinfo || { fail "Xvfb did not start on :$DNUM"; return 1; }
}

start_dunst() {
  dunst >> "$STATE/dunst.log" 2>&1 &
  remember dunst $!
  wait_for 10 bus_has org.freedesktop.Notifications || { fail "no notification daemon"; return 1; }
}

start_panel() {
  xfce4-panel --disable-wm-check >> "$STATE/panel.log" 2>&1 &
  remember xfce4-panel $!
  wait_for 20 bus_has org.kde.StatusNotifierWatcher || { fail "no StatusNotifierWatcher"; return 1; }
  wait_for 10 has_window --class xfce4-panel || { fail "no xfce4-panel window"; return 1; }
}

write_bus_config() {   # the session bus, minus D-Bus activation of notification servers
  local f name; mkdir -p "$STATE/services"
  for f in /usr/share/dbus-1/services/*.service; do
    [ -e "$f" ] || continue
    name=$(sed -n 's/^Name=//p' "$f")
    [ "$name" = org.freedesktop.Notifications ] || ln -sf "$f" "$STATE/services/"
  done
  cat > "$STATE/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path=$STATE/bus</listen>
  <auth>EXTERNAL</auth>
  <servicedir>$STATE/services</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
}

up() {
  local host=${1:-xfce}
  case $host in xfce|trayer) ;; *) log "unknown tray host $host (xfce|trayer)"; return 2 ;; esac
  [ -e "$STATE/pids" ] && { log "already up ($STATE/pids exists); run down first"; return 1; }
  mkdir -p "$STATE/home" "$STATE/runtime"; chmod 700 "$STATE/runtime"
  : > "$STATE/pids"; : > "$STATE/pids.named"; echo "$host" > "$STATE/host"
  export HOME=$STATE/home XDG_CONFIG_HOME=$STATE/home/.config \
         XDG_DATA_HOME=$STATE/home/.local/share XDG_CACHE_HOME=$STATE/home/.cache \
         XDG_STATE_HOME=$STATE/home/.local/state XDG_RUNTIME_DIR=$STATE/runtime NO_AT_BRIDGE=1
  export DESKTOP_SESSION_OWNER=$STATE   # marks what this session starts (not in $STATE/env)
  unset XAUTHORITY WAYLAND_DISPLAY SESSION_MANAGER
  start_xvfb || return 1
  # A private bus: never let anything autolaunch one tied to the display (it outlives the test).
  local bus_config=--session
  if [ "${NOTIFY_ACTIVATION:-yes}" = no ]; then write_bus_config; bus_config=--config-file=$STATE/bus.conf; fi
  dbus-daemon "$bus_config" --fork --address="unix:path=$STATE/bus" --print-pid=1 > "$STATE/bus.pid" \
    2> "$STATE/dbus.log" || { fail "dbus-daemon did not start"; return 1; }
  remember dbus "$(cat "$STATE/bus.pid")"; export DBUS_SESSION_BUS_ADDRESS="unix:path=$STATE/bus"
  dbus-monitor "interface='org.freedesktop.Notifications'" "interface='org.kde.StatusNotifierWatcher'" \
               "interface='org.kde.StatusNotifierItem'" "interface='com.canonical.dbusmenu'" \
    > "$STATE/dbus-monitor.log" 2>&1 &
  remember dbus-monitor $!
  start_dunst || return 1
  case $host in
    xfce)   write_xfce_config
            start_panel || return 1 ;;
    trayer) trayer --edge top --align right --widthtype request --height 32 \
                   --transparent false --tint 0xbbbbbb > "$STATE/trayer.log" 2>&1 &
            remember trayer $!
            wait_for 10 has_window --class trayer || { fail "no trayer window"; return 1; } ;;
  esac
  export QT_QPA_PLATFORM=xcb TRAY_HOST=$host DESKTOP_STATE=$STATE
  local v; { printf export; for v in DISPLAY DBUS_SESSION_BUS_ADDRESS HOME XDG_CONFIG_HOME XDG_DATA_HOME \
      XDG_CACHE_HOME XDG_STATE_HOME XDG_RUNTIME_DIR NO_AT_BRIDGE QT_QPA_PLATFORM TRAY_HOST DESKTOP_STATE; do
      printf ' %s=%q' "$v" "${!v}"; done; echo; } > "$STATE/env"
  log "up ($host) on $DISPLAY"; echo "$STATE/env"
}

down() {
  [ -e "$STATE/pids" ] || { log "nothing to stop"; return 0; }
  if [ "$(cat "$STATE/host" 2>/dev/null)" = xfce ] && [ -e "$STATE/env" ]; then
    # shellcheck disable=SC1091
    ( . "$STATE/env"; timeout 5 xfce4-panel --quit >/dev/null 2>&1 )
  fi
  # Children too: the panel's plugin wrappers, bus-activated services (xfconfd daemonizes, at-spi).
  local pids all p end
  pids=$(tac "$STATE/pids")
  all=$(printf '%s\n' $pids $(descendants $pids) $(owned) | awk 'NF && !seen[$0]++')
  for p in $all; do kill "$p" 2>/dev/null; done
  end=$((SECONDS + 3))
  for p in $all; do while alive "$p" && [ "$SECONDS" -lt "$end" ]; do sleep 0.05; done; done
  for p in $all; do alive "$p" && { log "killing $p hard"; kill -9 "$p" 2>/dev/null; }; done
  rm -f "$STATE/pids" "$STATE/pids.named" "$STATE/env" "$STATE/bus" "$STATE/bus.pid" "$STATE/display"
  log "down"
}

part_pid() { awk -v n="$1" '$1 == n { p = $2 } END { if (p) print p }' "$STATE/pids.named"; }

kill_part() {
  local pid c; pid=$(part_pid "$1")
  { [ -n "$pid" ] && alive "$pid"; } || { log "$1 is not running"; return 1; }
  local children; children=$(descendants "$pid")
  kill "$pid"
  local end=$((SECONDS + 10))
  while alive "$pid" && [ "$SECONDS" -lt "$end" ]; do sleep 0.05; done
  alive "$pid" && { kill -9 "$pid"; log "killed $1 hard"; }
  # Its children too (xfce4-panel's plugin wrappers), so nothing of it serves any more.
  for c in $children; do kill "$c" 2>/dev/null; done
  log "killed $1 ($pid)"
}

start_part() { # shellcheck disable=SC1091
  . "$STATE/env"; export DESKTOP_SESSION_OWNER=$STATE
  case $1 in
    dunst) start_dunst ;;
    xfce4-panel) start_panel ;;
    *) log "unknown part $1 (dunst|xfce4-panel)"; return 2 ;;
  esac && log "started $1 ($(part_pid "$1"))"
}

shot() { # shellcheck disable=SC1091
  . "$STATE/env"; local dir=${2:-$STATE}; mkdir -p "$dir"; import -window root "$dir/$1.png" && echo "$dir/$1.png"; }
pixel() { # shellcheck disable=SC1091
  . "$STATE/env"; import -window root -crop "1x1+$1+$2" -depth 8 txt:- |
    sed -n 's/^0,0: *(\([0-9]*\),\([0-9]*\),\([0-9]*\).*/srgb(\1,\2,\3)/p'; }

case ${1:-} in
  up) shift; up "$@" ;;
  down) down ;;
  kill) [ $# -ge 2 ] || { echo "usage: $0 kill dunst|xfce4-panel" >&2; exit 2; }; kill_part "$2" ;;
  start) [ $# -ge 2 ] || { echo "usage: $0 start dunst|xfce4-panel" >&2; exit 2; }; start_part "$2" ;;
  shot) [ $# -ge 2 ] || { echo "usage: $0 shot NAME [DIR]" >&2; exit 2; }; shot "$2" "${3:-}" ;;
  pixel) [ $# -ge 3 ] || { echo "usage: $0 pixel X Y" >&2; exit 2; }; pixel "$2" "$3" ;;
  *) echo "usage: $0 up [xfce|trayer] | down | kill PART | start PART | shot NAME [DIR] | pixel X Y   (STATE=$STATE)" >&2; exit 2 ;;
esac
