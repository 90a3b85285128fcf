#!/usr/bin/env bash
# System libraries pcseg needs at run time:
#   libusb-1.0-0      `import open3d` fails without it (libusb-1.0.so.0)
#   libegl1, libgl1-mesa-dri   headless rendering (Open3D falls back to EGL + Mesa without a display)
#   xvfb              optional: lets the viewer test run a real window on a virtual screen
#   chromium, chromium-driver   optional: headless browser for the pcseg annotate test
#                     (tests/test_annotate_web.py skips without them)
# As root we apt-get what is missing; otherwise we say exactly what to install.
set -euo pipefail
missing=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
have_lib 'libEGL.so.1' || missing+=(libegl1)
[ -e /usr/lib/x86_64-linux-gnu/dri ] || [ -e /usr/lib/dri ] || missing+=(libgl1-mesa-dri)
optional=()
command -v Xvfb >/dev/null 2>&1 || optional+=(xvfb)
command -v xdotool >/dev/null 2>&1 || optional+=(xdotool)
command -v chromium >/dev/null 2>&1 || optional+=(chromium)
command -v chromedriver >/dev/null 2>&1 || optional+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]} ${optional[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ ${#optional[@]} -gt 0 ]; then
    apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null \
      || echo "note: optional packages ${optional[*]} not installed (the viewer / annotate tests will skip)"
  fi
elif [ ${#missing[@]} -gt 0 ]; then
  echo "ERROR: pcseg needs system libraries that are not installed: ${missing[*]}" >&2
  echo "       install them as root, e.g.:  sudo apt-get install ${missing[*]}" >&2
  echo "       (conda users: conda install -c conda-forge libusb)" >&2
  exit 1
else
  echo "note: optional ${optional[*]} not installed; the interactive-viewer / annotate browser tests will be skipped"
fi
