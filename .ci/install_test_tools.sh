#!/usr/bin/env bash
# Installs what the PACS and viewer tests use, if missing: Orthanc with its DICOMweb and GDCM
# plugins, Chromium and node (Debian/Ubuntu apt, as root or with password-less sudo), and
# playwright-core (npm, into tests/ohif/node_modules). Without root the tests that need a
# missing tool skip and say which one. The tests start their own Orthanc on a free port and
# stop it at the end; a system Orthanc service that apt starts on install is stopped again.
set -uo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -x /usr/sbin/Orthanc ] || command -v Orthanc >/dev/null || packages+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || packages+=(orthanc-dicomweb)
[ -e /usr/share/orthanc/plugins/libOrthancGdcm.so ] || packages+=(orthanc-gdcm)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || packages+=(chromium)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

if [ ${#packages[@]} -gt 0 ]; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
    if command -v apt-get >/dev/null && "${as_root[@]}" true 2>/dev/null; then
        echo "installing: ${packages[*]}"
        "${as_root[@]}" apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" ||
            echo "warning: apt-get could not install ${packages[*]}; the tests that need them will skip" >&2
        if [[ " ${packages[*]} " == *" orthanc "* ]] && command -v systemctl >/dev/null; then
            "${as_root[@]}" systemctl stop orthanc 2>/dev/null || true  # the tests run their own
        fi
    else
        echo "warning: missing ${packages[*]} and no apt-get as root; the tests that need them will skip" >&2
    fi
fi

if command -v npm >/dev/null && [ ! -d tests/ohif/node_modules/playwright-core ]; then
    npm ci --prefix tests/ohif --no-audit --no-fund ||
        echo "warning: npm could not install playwright-core; the OHIF test will skip" >&2
fi
exit 0
