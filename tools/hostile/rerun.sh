#!/usr/bin/env bash
# Reruns the hostile inputs of issue 12 against a ser binary and prints a Markdown table of
# what happened (exit status, first line of the message). Usage: tools/hostile/rerun.sh [SER]
set -uo pipefail
ser="$(realpath "${1:-target/release/ser}")"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export SER_AUTOTUNE=off
python3 - <<'PY'
import struct, math
def riff(chunks, pad=True):
    body = b"WAVE"
    for cid, data in chunks:
        body += cid + struct.pack("<I", len(data)) + data + (b"\0" if pad and len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body
def fmt(tag, ch, rate, bits):
    return struct.pack("<HHIIHH", tag, ch, rate, rate * ch * bits // 8, ch * bits // 8, bits)
tone = [0.3 * math.sin(2 * math.pi * 220 * i / 16000) for i in range(16000)]
pcm16 = b"".join(struct.pack("<h", int(v * 32767)) for v in tone)
open("rate-1hz.wav", "wb").write(riff([(b"fmt ", fmt(1, 1, 1, 16)), (b"data", pcm16)]))
open("float-1e20.wav", "wb").write(riff([(b"fmt ", fmt(3, 1, 16000, 32)), (b"data", b"".join(struct.pack("<f", v * 1e20) for v in tone))]))
open("silent.wav", "wb").write(riff([(b"fmt ", fmt(1, 1, 16000, 16)), (b"data", b"\0\0" * 16000)]))
open("ten-samples.wav", "wb").write(riff([(b"fmt ", fmt(1, 1, 16000, 16)), (b"data", pcm16[:20])]))
open("padded-odd-chunk.wav", "wb").write(riff([(b"fmt ", fmt(1, 1, 16000, 16)), (b"LIST", b"odd"), (b"data", pcm16)]))
open("float64.wav", "wb").write(riff([(b"fmt ", fmt(3, 1, 16000, 64)), (b"data", b"".join(struct.pack("<d", v) for v in tone))]))
s = bytearray(riff([(b"fmt ", fmt(1, 1, 16000, 16)), (b"data", pcm16)])); i = s.find(b"data"); s[i + 4:i + 8] = b"\xff\xff\xff\xff"
open("streaming.wav", "wb").write(bytes(s))
PY
mkdir -p fifo loop
cp "$root/examples/clips/03-01-01-01-01-01-01.wav" fifo/good.wav
mkfifo fifo/03-01-02-01-01-01-01.wav
cp "$root/examples/clips/03-01-01-01-01-01-01.wav" loop/good.wav
ln -s . loop/again
ln -s good.wav link.safetensors
"$ser" features --data "$root/examples/clips" --out feats.safetensors --no-cache >/dev/null 2>&1
echo "| input | command | exit | first line of stderr (or stdout lines) |"
echo "|---|---|---:|---|"
row() {
    local what="$1"; shift
    local out err code
    out=$(timeout 120 "$@" 2>err.txt); code=$?
    err=$(grep -v '^$' err.txt | head -n 1 | cut -c1-150)
    err="${err:+$err; }$(printf '%s' "$out" | grep -c . ) lines on stdout"
    echo "| $what | \`${*/#$ser/ser}\` | $code | ${err//|/\\|} |"
}
row "batch size 0" "$ser" train --features feats.safetensors --batch-size 0 --out m.safetensors
row "test fraction 1.5" "$ser" train --features feats.safetensors --test-fraction 1.5 --out m.safetensors
row "tuning NaN" "$ser" features --data "$root/examples/clips" --out f2.safetensors --tuning NaN
row "n_fft 8" "$ser" features --data "$root/examples/clips" --out f2.safetensors --n-fft 8
row "WAV declaring 1 Hz" "$ser" predict rate-1hz.wav
row "float WAV of 1e20" "$ser" predict float-1e20.wav
row "silent clip" "$ser" predict silent.wav
row "10-sample clip" "$ser" predict ten-samples.wav
row "FIFO named .wav beside a good file" "$ser" predict fifo
row "symlink loop beside a good file" "$ser" predict loop
row "--out /dev/null" "$ser" train --features feats.safetensors --out /dev/null
row "--out a symlink" "$ser" train --features feats.safetensors --out link.safetensors
row "padded odd-sized chunk (valid)" "$ser" predict padded-odd-chunk.wav
row "64-bit float WAV (valid)" "$ser" predict float64.wav
row "streaming WAV, size 0xFFFFFFFF (valid)" "$ser" predict streaming.wav
row "README command, no XDG_RUNTIME_DIR" env -u XDG_RUNTIME_DIR "$ser" predict "$root/examples/clips"
