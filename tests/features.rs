//! Feature parity with librosa 0.11 on two of the 48 kHz RAVDESS originals of tests/clips (one stereo)
//! (golden files from tools/golden/make_golden.py), at librosa's defaults and at ser's. The
//! synthetic golden signals are compiled into `ser selftest` and checked by tests/selftest.rs;
//! both use one comparison (`ser::selftest::compare_with_librosa`).

mod common;

use common::gpu;
use ser::selftest::{Golden, Tally, compare_with_librosa};
use std::path::Path;

#[test]
fn features_of_the_48k_originals_match_librosa_frame_by_frame_and_averaged() {
    let g = &gpu().gpu;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["03-01-08-01-02-02-01", "03-01-05-02-02-01-07"] {
        let bytes = std::fs::read(root.join(format!("tests/golden/ravdess48k_{file}.safetensors"))).unwrap();
        let golden = Golden::parse(&bytes).unwrap();
        let signal = ser::audio::decode_file(&common::original(&format!("{file}.wav"))).unwrap().samples;
        let mut t = Tally::default();
        compare_with_librosa(g, file, &golden, &signal, &mut t).unwrap();
        eprintln!("{file}: worst {} ({} of its tolerance, {} values)", t.worst_at, t.worst_ratio, t.compared);
        assert!(t.passed(), "{file}: faults {:?}, worst {} ({} of its tolerance)", t.faults, t.worst_at, t.worst_ratio);
        assert!(t.compared > 10_000, "{file}: only {} values compared", t.compared);
    }
}
