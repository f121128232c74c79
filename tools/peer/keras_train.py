"""The reference recipe in Keras/TensorFlow on the CPU, on a feature file written by `ser features`,
for side-by-side timing and accuracy against `ser train`.

    tools/.venv-peer/bin/python tools/peer/keras_train.py --features F.safetensors \
        [--model cnn|mlp|lstm|cnn-lstm] [--input vectors|stats|frames] [--epochs 30] [--seed 0]

Same selection (7 classes, disgust dropped), per-column standardisation fitted on the training part,
balanced class weights, Adam 1e-3, batch 32, 10% of the training part for validation, early stopping
(patience 10, best weights restored) and LR on plateau (factor 0.5, patience 4), as `ser train`.
Prints seconds per epoch (mean over epochs after the first, which includes graph tracing) and
the test accuracy / macro F1 on a stratified 80/20 split.
"""
import argparse, json, os, time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
from safetensors import safe_open
from safetensors.numpy import load_file
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

ap = argparse.ArgumentParser()
ap.add_argument("--features", required=True)
ap.add_argument("--model", default="cnn", choices=["cnn", "mlp", "lstm", "cnn-lstm"])
ap.add_argument("--input", default="vectors", choices=["vectors", "stats", "frames"])
ap.add_argument("--lstm-units", type=int, default=64)
ap.add_argument("--lstm-directions", type=int, default=2, choices=[1, 2])
ap.add_argument("--time-pooling", default="mean", choices=["mean", "last"], help="the LSTM's head: the mean over steps, or its last state (ser's --time-pooling)")
ap.add_argument("--epochs", type=int, default=30)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--clip-norm", type=float, default=0.0, help="global_clipnorm (ser's --clip-norm); 0: none")
a = ap.parse_args()
tf.keras.utils.set_random_seed(a.seed)

with safe_open(a.features, "np") as f:
    meta = f.metadata()
t = load_file(a.features)
clips = json.loads(meta["clips"])
emotion = np.array([c["emotion"] for c in clips])
keep = emotion != "disgust"
if a.input == "frames":
    x = t["frames"].reshape(len(clips), -1, t["vectors"].shape[1])
    lengths = t["lengths"].astype(np.int64)
else:
    x = t["vectors"] if a.input == "vectors" else np.concatenate([t["vectors"], t["stds"]], 1)
    lengths = np.ones(len(clips), dtype=np.int64)
x, emotion, lengths = x[keep], emotion[keep], lengths[keep]
classes = sorted(set(emotion))
y = np.array([classes.index(e) for e in emotion])
xtr, xte, ytr, yte, ltr, lte = train_test_split(x, y, lengths, test_size=0.2, stratify=y, random_state=a.seed)
xtr, xva, ytr, yva, ltr, lva = train_test_split(xtr, ytr, ltr, test_size=0.1, stratify=ytr, random_state=a.seed + 1)
if a.input == "frames":
    # Per feature over the training clips' valid frames (ser's frame scaler); padding stays 0,
    # which the Masking layer of the lstm model skips.
    valid = np.concatenate([f[:n] for f, n in zip(xtr, ltr)])
    mean, std = valid.mean(0), valid.std(0) + 1e-6

    def scale(v, ls):
        out = np.zeros_like(v)
        for i, n in enumerate(ls):
            out[i, :n] = (v[i, :n] - mean) / std
        return out

    xtr, xva, xte = scale(xtr, ltr), scale(xva, lva), scale(xte, lte)
else:
    mean, std = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xva, xte = [(v - mean) / std for v in (xtr, xva, xte)]
k = len(classes)
counts = np.bincount(ytr, minlength=k)
class_weight = {i: len(ytr) / (k * c) for i, c in enumerate(counts)}

L = tf.keras.layers
if a.model in ("lstm", "cnn-lstm"):
    if a.input != "frames":
        raise SystemExit("--model lstm and cnn-lstm read --input frames")
    layers = [L.Input(shape=xtr.shape[1:])]
    if a.model == "lstm":
        # Masked as ser masks: padded frames change nothing.
        layers.append(L.Masking(0.0))
    else:
        for filters in (64, 128):
            layers += [L.Conv1D(filters, 5, padding="same", activation="relu"), L.BatchNormalization(), L.MaxPooling1D(2)]
    lstm = L.LSTM(a.lstm_units, return_sequences=a.time_pooling == "mean")
    layers.append(L.Bidirectional(lstm) if a.lstm_directions == 2 else lstm)
    if a.time_pooling == "mean":
        layers.append(L.GlobalAveragePooling1D())
    layers.append(L.Dropout(0.3))
elif a.model == "cnn":
    if a.input != "frames":
        # One channel along the feature axis (the study's); frames are already (steps, features).
        xtr, xva, xte = [v[..., None] for v in (xtr, xva, xte)]
    layers = [L.Input(shape=xtr.shape[1:])]
    for filters in (128, 256, 512):
        layers += [L.Conv1D(filters, 5, padding="same", activation="relu"), L.BatchNormalization(), L.MaxPooling1D(2), L.Dropout(0.3)]
    layers += [L.Flatten(), L.Dense(256, activation="relu"), L.Dropout(0.4), L.Dense(128, activation="relu"), L.Dropout(0.4)]
else:
    layers = [L.Input(shape=xtr.shape[1:])]
    for units in (512, 256):
        layers += [L.Dense(units, activation="relu"), L.BatchNormalization(), L.Dropout(0.4)]
layers.append(L.Dense(k, activation="softmax"))
model = tf.keras.Sequential(layers)
model.compile(optimizer=tf.keras.optimizers.Adam(1e-3, global_clipnorm=a.clip_norm or None), loss="sparse_categorical_crossentropy", metrics=["accuracy"])


class Timer(tf.keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        times.append(time.perf_counter() - self.t)


times = []
model.fit(
    xtr, ytr, validation_data=(xva, yva), epochs=a.epochs, batch_size=32, class_weight=class_weight, verbose=2 if os.environ.get("PEER_VERBOSE") else 0,
    callbacks=[Timer(), tf.keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True),
               tf.keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=4, min_lr=1e-5)],
)
pred = model.predict(xte, verbose=0).argmax(1)
steady = times[1:] or times
print(json.dumps({
    "framework": f"tensorflow {tf.__version__} (CPU, {os.cpu_count()} cores)",
    "model": a.model, "input": a.input, "train": len(ytr), "epochs_run": len(times),
    "first_epoch_s": round(times[0], 3), "s_per_epoch": round(float(np.mean(steady)), 3),
    "samples_per_s": round(len(ytr) / float(np.mean(steady)), 1),
    "test_accuracy": round(accuracy_score(yte, pred), 4), "test_macro_f1": round(f1_score(yte, pred, average="macro"), 4),
}))
