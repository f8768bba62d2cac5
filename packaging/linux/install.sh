#!/bin/sh
# Install this Port Watch folder for the current user (no root needed):
#   the app        -> ~/.local/opt/portwatch/      (a copy of this folder)
#   the command    -> ~/.local/bin/portwatch       (a symlink)
#   menu entry     -> ~/.local/share/applications/org.portwatch.PortWatch.desktop
#   icons, AppStream metadata -> ~/.local/share/icons/hicolor/..., ~/.local/share/metainfo/
#
#   ./install.sh              install (or update: run the new version's install.sh)
#   ./install.sh --uninstall  remove all of the above (settings and history stay)
#   PREFIX=/opt/pw ./install.sh   install somewhere else than ~/.local
set -eu

APP_ID=org.portwatch.PortWatch
here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-${HOME:?}/.local}
dest=$prefix/opt/portwatch
share=$prefix/share

refresh_caches() {
  if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$share/applications" 2>/dev/null || true
  fi
  if command -v gtk-update-icon-cache >/dev/null 2>&1; then
    gtk-update-icon-cache -q -t "$share/icons/hicolor" 2>/dev/null || true
  fi
}

icon_files() { (cd "$here/share/icons/hicolor" && find . -type f | sed 's|^\./||'); }

if [ "${1:-}" = "--uninstall" ]; then
  for icon in $(icon_files); do rm -f "$share/icons/hicolor/$icon"; done
  rm -f "$share/applications/$APP_ID.desktop" "$share/metainfo/$APP_ID.metainfo.xml"
  if [ "$(readlink "$prefix/bin/portwatch" 2>/dev/null)" = "$dest/portwatch" ]; then
    rm -f "$prefix/bin/portwatch"
  fi
  # Also when this is the installed copy: the shell keeps reading this script from its open
  # file after the folder is gone.
  if [ -x "$dest/portwatch" ]; then cd / && rm -rf "$dest"; fi
  refresh_caches
  echo "Port Watch removed from $prefix (your settings and history are kept)."
  exit 0
fi

[ -x "$here/portwatch" ] || { echo "install.sh: $here/portwatch is missing" >&2; exit 1; }
if [ "$here" != "$dest" ]; then
  rm -rf "$dest.new"
  mkdir -p "$(dirname "$dest")"
  cp -R "$here" "$dest.new"
  rm -rf "$dest"
  mv "$dest.new" "$dest"
fi

mkdir -p "$prefix/bin" "$share/applications" "$share/metainfo" "$share/icons/hicolor"
ln -sfn "$dest/portwatch" "$prefix/bin/portwatch"
(cd "$here/share/icons/hicolor" && find . -type f) | while read -r icon; do
  mkdir -p "$(dirname "$share/icons/hicolor/$icon")"
  cp "$here/share/icons/hicolor/$icon" "$share/icons/hicolor/$icon"
done
cp "$here/share/metainfo/$APP_ID.metainfo.xml" "$share/metainfo/"
# The menu entry starts this copy by its full path: ~/.local/bin is not always on a desktop
# session's PATH. Desktop Entry quoting: "..." with \ before " ` $ and \ inside.
exec_path=$(printf '%s' "$dest/portwatch" | sed -e 's/\\/\\\\\\\\/g' -e 's/["`$]/\\\\&/g')
EXEC_LINE="Exec=\"$exec_path\" tray" TRY_LINE="TryExec=$dest/portwatch" awk '
  /^Exec=/ { print ENVIRON["EXEC_LINE"]; print ENVIRON["TRY_LINE"]; next }
  { print }' "$here/share/applications/$APP_ID.desktop" > "$share/applications/$APP_ID.desktop"
refresh_caches

echo "Port Watch installed in $dest"
echo "  start it from the applications menu (Port Watch), or run: portwatch"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "  note: $prefix/bin is not on your PATH; add it to use the portwatch command" ;;
esac
