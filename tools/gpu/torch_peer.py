"""The PyTorch peer of `ser bench`: the same work on the same GPU, for side-by-side ratios.

    python3 tools/gpu/torch_peer.py --device cuda --out torch.jsonl [--tiny]

Prints (and writes) one JSON line per measurement:
  {"what": "features", ...}  MelSpectrogram + MFCC (torchaudio; plain torch if it is missing)
                             of synthetic clips like `ser bench features` (tones, a chirp and
                             noise at 16 kHz, ser's defaults: n_fft 1024, hop 256, 64 mels, 40 MFCC)
  {"what": "train", ...}     one training epoch of the refined CNN (Conv1D 128/256/512, k 5,
                             batch norm, max pool, dropout; dense 256/128) on synthetic data like
                             `ser bench train`, Adam 1e-3, batch 32, f32
  {"what": "gemm", ...}      f32 GEMMs of `ser bench gemm`'s sizes with TF32 off
Times are medians over --repeats after one untimed warm-up, synchronised on the device.
"""
import argparse, json, math, statistics, time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--out", default=None)
ap.add_argument("--clips", type=int, default=256)
ap.add_argument("--seconds", type=float, default=4.0)
ap.add_argument("--samples", type=int, default=1486)
ap.add_argument("--batch-size", type=int, default=32)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--gemm-sizes", default="128,256,512,1024,448x512x1280,928x256x640,1280x512x448")
ap.add_argument("--tiny", action="store_true", help="a few clips, samples and small GEMMs (a CPU smoke test)")
a = ap.parse_args()
if a.tiny:
    a.clips, a.seconds, a.samples, a.repeats, a.gemm_sizes = 4, 0.5, 64, 1, "64,32x48x40"

dev = torch.device(a.device)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
lines = []


def emit(rec):
    rec.update(peer="torch", torch=torch.__version__, device=name)
    print(json.dumps(rec), flush=True)
    lines.append(rec)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def median_time(fn, repeats):
    fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---- features: synthetic clips, MelSpectrogram + MFCC ----
sr, n_fft, hop, n_mels, n_mfcc = 16000, 1024, 256, 64, 40
g = torch.Generator().manual_seed(0)
clips = []
for i in range(a.clips):
    n = int(sr * a.seconds * (0.75 + 0.5 * (i % 5) / 4))
    t = torch.arange(n, dtype=torch.float64) / sr
    kind = i % 3
    if kind == 0:
        x = 0.5 * torch.sin(2 * math.pi * (110 + 40 * (i % 11)) * t)
    elif kind == 1:
        x = 0.5 * torch.sin(2 * math.pi * (100 * t + 1500 * t * t / max(a.seconds, 1e-3)))
    else:
        x = 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    clips.append(x.float())
audio_s = sum(len(c) for c in clips) / sr
try:
    import torchaudio

    mfcc_op = torchaudio.transforms.MFCC(sample_rate=sr, n_mfcc=n_mfcc, melkwargs=dict(n_fft=n_fft, hop_length=hop, n_mels=n_mels)).to(dev)
    impl = f"torchaudio {torchaudio.__version__}"
except ImportError:
    # torchaudio's MFCC in plain torch: Hann STFT power, HTK mel filterbank, dB (top_db 80), DCT-II ortho.
    mel_f = torch.linspace(0, 2595 * math.log10(1 + (sr / 2) / 700), n_mels + 2)
    hz = 700 * (10 ** (mel_f / 2595) - 1)
    bins = torch.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, ce, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    fb = torch.clamp(torch.minimum((bins - lo) / (ce - lo), (hi - bins) / (hi - ce)), min=0).to(dev)
    k = torch.arange(n_mels, dtype=torch.float64)
    dct = torch.cos(math.pi / n_mels * (k[None, :] + 0.5) * torch.arange(n_mfcc, dtype=torch.float64)[:, None])
    dct[0] *= 1 / math.sqrt(2)
    dct = (dct * math.sqrt(2 / n_mels)).float().to(dev)
    window = torch.hann_window(n_fft, device=dev)

    def mfcc_op(x):
        spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True).abs() ** 2
        mel = fb @ spec
        db = 10 * torch.log10(torch.clamp(mel, min=1e-10))
        db = torch.maximum(db, db.amax() - 80)
        return dct @ db

    impl = "plain torch (torchaudio missing)"
gpu_clips = [c.to(dev) for c in clips]
secs = median_time(lambda: [mfcc_op(c) for c in gpu_clips], a.repeats)
emit(dict(what="features", clips=a.clips, audio_seconds=audio_s, median_s=secs, clips_per_s=a.clips / secs, implementation=impl))

# ---- train: the refined CNN, one epoch ----
torch.manual_seed(0)
width, classes = 59, 7
x = torch.randn(a.samples, 1, width, device=dev)
y = torch.randint(0, classes, (a.samples,), device=dev)


def block(cin, cout):
    return [torch.nn.Conv1d(cin, cout, 5, padding=2), torch.nn.ReLU(), torch.nn.BatchNorm1d(cout), torch.nn.MaxPool1d(2), torch.nn.Dropout(0.3)]


length = width
for _ in range(3):
    length //= 2
model = torch.nn.Sequential(*block(1, 128), *block(128, 256), *block(256, 512), torch.nn.Flatten(),
                            torch.nn.Linear(512 * length, 256), torch.nn.ReLU(), torch.nn.Dropout(0.4),
                            torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Dropout(0.4), torch.nn.Linear(128, classes)).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
lossf = torch.nn.CrossEntropyLoss()


def epoch():
    model.train()
    perm = torch.randperm(a.samples, device=dev)
    for i in range(0, a.samples, a.batch_size):
        idx = perm[i:i + a.batch_size]
        opt.zero_grad(set_to_none=True)
        lossf(model(x[idx]), y[idx]).backward()
        opt.step()


secs = median_time(epoch, a.repeats)
emit(dict(what="train", model="cnn", precision="f32", samples=a.samples, batch_size=a.batch_size, epoch_s=secs, samples_per_s=a.samples / secs))

# ---- gemm: f32, TF32 off ----
for s in a.gemm_sizes.split(","):
    m, n, k = (int(v) for v in s.split("x")) if "x" in s else (int(s),) * 3
    A = torch.randn(m, k, device=dev)
    B = torch.randn(k, n, device=dev)
    reps = max(a.repeats, 5)
    secs = median_time(lambda: A @ B, reps)
    emit(dict(what="gemm", m=m, n=n, k=k, median_ms=secs * 1e3, gflops=2 * m * n * k / secs / 1e9))

if a.out:
    with open(a.out, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in lines)
