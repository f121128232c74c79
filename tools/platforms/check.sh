#!/usr/bin/env bash
# ser on other platforms, from this Linux machine (docs/guide/contributing.md, "Other platforms"):
#   - macOS (Apple silicon and Intel): the crate and the Python bindings type-check for
#     aarch64-apple-darwin and x86_64-apple-darwin (blake3's C through zig's cc; linking needs
#     Apple's SDK, which is not here);
#   - Windows: ser.exe and the Python wheel (abi3, win_amd64) cross-built with MinGW-w64, then
#     ser.exe run under Wine on lavapipe through Wine's Vulkan and OpenGL: the quick selftest on
#     both, and the bundled clips predicted as the Linux binary predicts them.
#
#   tools/platforms/check.sh [OUT]     # OUT: where the .exe, the wheel and the logs go
#
# Needs: rustup (it adds the targets), apt (gcc-mingw-w64-x86-64 wine64 xvfb xauth), Python 3
# with pip (ziglang, maturin into a venv under OUT). From cold on 2 cores the Windows build takes 8 minutes, the wheel 3 more.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/platforms}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/platforms

# Tools.
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || [ ! -x /usr/lib/wine/wine64 ] || ! command -v xvfb-run >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc-mingw-w64-x86-64 wine64 xvfb xauth >"$OUT/apt.log"
fi
rustup target add aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-gnu >/dev/null
[ -x "$OUT/venv/bin/python" ] || python3 -m venv "$OUT/venv"
"$OUT/venv/bin/pip" install -q ziglang 'maturin>=1.5,<2' numpy

# macOS: zig's cc for the C of build scripts, without the flags zig does not take, and its ar.
printf '#!/usr/bin/env bash\nexec "%s" -m ziglang ar "$@"\n' "$OUT/venv/bin/python" >"$OUT/zigar"
chmod +x "$OUT/zigar"
for arch in aarch64 x86_64; do
    cc="$OUT/zigcc-$arch-macos"
    cat >"$cc" <<CC
#!/usr/bin/env bash
args=(); skip=0
for a in "\$@"; do
    if [ \$skip = 1 ]; then skip=0; continue; fi
    case "\$a" in -arch) skip=1 ;; -mmacosx-version-min=*|--target=*) ;; *) args+=("\$a") ;; esac
done
exec "$OUT/venv/bin/python" -m ziglang cc -target $arch-macos "\${args[@]}"
CC
    chmod +x "$cc"
    env "CC_${arch}_apple_darwin=$cc" "AR_${arch}_apple_darwin=$OUT/zigar" \
        cargo check --release --workspace --all-targets --target "$arch-apple-darwin" --target-dir "$TARGET_DIR" >"$OUT/check-$arch-macos.log" 2>&1
    echo "platforms: $arch-apple-darwin: the crate, its tests and the Python bindings type-check"
done

# Windows: the binary and the wheel.
cargo build --release --target x86_64-pc-windows-gnu --target-dir "$TARGET_DIR" >"$OUT/build-windows.log" 2>&1
cp "$TARGET_DIR/x86_64-pc-windows-gnu/release/ser.exe" "$OUT/"
CARGO_TARGET_DIR="$TARGET_DIR" "$OUT/venv/bin/maturin" build --release --target x86_64-pc-windows-gnu \
    -m python/Cargo.toml --features pyo3/generate-import-lib -o "$OUT/wheels" >"$OUT/wheel-windows.log" 2>&1
wheel=$(ls "$OUT"/wheels/ser-*-win_amd64.whl)
echo "platforms: built $(basename "$wheel")"
# What the extension imports: Windows' own DLLs and python3.dll (the stable ABI), no MinGW runtime.
"$OUT/venv/bin/python" -m zipfile -e "$wheel" "$OUT/wheel"
imports=$(x86_64-w64-mingw32-objdump -p "$OUT/wheel/ser/_ser.pyd" | sed -n 's/.*DLL Name: //p' | sort -uf | tr '\n' ' ')
echo "platforms: ser/_ser.pyd imports $imports"
if grep -qiE 'libgcc|libstdc|libwinpthread' <<<"$imports"; then
    echo "platforms: FAIL: the extension needs MinGW's runtime DLLs" >&2
    exit 1
fi

# Wine 8 (Debian 12) lacks bcryptprimitives.dll, where Rust's std takes its random bytes on
# Windows 10 and later: a two-line stand-in beside the .exe, over advapi32's RtlGenRandom.
cat >"$OUT/prng.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return SystemFunction036(data, (ULONG)len); }
C
x86_64-w64-mingw32-gcc -shared -O2 -o "$OUT/bcryptprimitives.dll" "$OUT/prng.c" -ladvapi32

export WINEPREFIX="$OUT/wineprefix" WINEDEBUG=-all
xvfb-run -a /usr/lib/wine/wine64 wineboot -i >"$OUT/wineboot.log" 2>&1 || true
# As on Windows, no HOME: the caches go to %LOCALAPPDATA%\ser.
wine() { env -u HOME -u XDG_CACHE_HOME xvfb-run -a /usr/lib/wine/wine64 "$OUT/ser.exe" "$@" 2> >(grep -v '^X connection' >&2); }
wine devices >"$OUT/devices.log"
grep -q '(vulkan, Cpu)' "$OUT/devices.log" || { cat "$OUT/devices.log"; echo "platforms: FAIL: no Vulkan adapter under Wine" >&2; exit 1; }
for backend in vulkan gl; do
    if wine selftest --quick --backend "$backend" >"$OUT/selftest-$backend.log" 2>&1; then
        echo "platforms: ser.exe selftest --quick --backend $backend under Wine: pass ($(grep -c '| pass |' "$OUT/selftest-$backend.log") checks)"
    else
        tail -30 "$OUT/selftest-$backend.log"
        echo "platforms: FAIL: ser.exe selftest --backend $backend" >&2
        exit 1
    fi
done
# The bundled clips: the same predictions as the Linux binary on the same adapter.
cargo build --release -q
"${CARGO_TARGET_DIR:-target}/release/ser" predict --backend vulkan examples/clips --format csv >"$OUT/predict-linux.csv"
wine predict --backend vulkan examples/clips --format csv | tr -d '\r' | sed 's#\\#/#g' >"$OUT/predict-windows.csv"
"$OUT/venv/bin/python" - "$OUT/predict-linux.csv" "$OUT/predict-windows.csv" <<'PY'
import csv, sys
linux, windows = (list(csv.DictReader(open(p))) for p in sys.argv[1:])
assert len(linux) == len(windows) > 0, (len(linux), len(windows))
worst = 0.0
for a, b in zip(linux, windows):
    assert a["file"].rsplit("/", 1)[-1] == b["file"].rsplit("/", 1)[-1], (a["file"], b["file"])
    assert a["label"] == b["label"], (a, b)
    worst = max(worst, max(abs(float(a[k]) - float(b[k])) for k in a if k not in ("file", "label")))
assert worst < 1e-5, worst
print(f"platforms: ser.exe under Wine predicts the {len(linux)} bundled clips as on Linux (worst probability difference {worst:.1e})")
PY

# Files: features of the 16 kHz test clips as on Linux (every tensor bit for bit), cached under
# %LOCALAPPDATA%\ser and written again over the first file from the cache; a prediction run
# with --out, resumed by a second run, gives the file one run gives.
rm -rf "$WINEPREFIX"/drive_c/users/*/AppData/Local/ser/features
wine features --backend vulkan --data tests/clips/16k --out "$OUT/features-windows.safetensors" >/dev/null 2>"$OUT/features-windows.log"
cp "$OUT/features-windows.safetensors" "$OUT/features-windows-first.safetensors"
ls "$WINEPREFIX"/drive_c/users/*/AppData/Local/ser/features/*.safetensors >/dev/null
wine features --backend vulkan --data tests/clips/16k --out "$OUT/features-windows.safetensors" >/dev/null 2>>"$OUT/features-windows.log"
cmp "$OUT/features-windows-first.safetensors" "$OUT/features-windows.safetensors"
"${CARGO_TARGET_DIR:-target}/release/ser" features --backend vulkan --no-cache --data tests/clips/16k --out "$OUT/features-linux.safetensors" 2>/dev/null
PYTHONPATH=tools/peer "$OUT/venv/bin/python" - "$OUT/features-linux.safetensors" "$OUT/features-windows.safetensors" <<'PY'
import sys
import numpy as np
from arrays import load_safetensors
(a, _), (b, _) = (load_safetensors(p) for p in sys.argv[1:])
assert a.keys() == b.keys(), (a.keys(), b.keys())
for k in a:
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
print(f"platforms: ser.exe features of tests/clips/16k equal Linux's ({', '.join(sorted(a))}), cached under %LOCALAPPDATA%\\ser")
PY
rm -f "$OUT/predict-once.jsonl" "$OUT/predict-resumed.jsonl"
wine predict --backend vulkan examples/clips --out "$OUT/predict-once.jsonl"
head -n 2 "$OUT/predict-once.jsonl" >"$OUT/predict-resumed.jsonl"
wine predict --backend vulkan examples/clips --out "$OUT/predict-resumed.jsonl"
cmp "$OUT/predict-once.jsonl" "$OUT/predict-resumed.jsonl"
echo "platforms: ser.exe predict --out resumed after 2 of 4 clips writes the file one run writes"
