//! The GEMM autotuner: it times the candidates that pass their check, keeps the fastest per
//! shape bucket, persists the choice keyed by adapter, reuses it, and yields to a pin. Each
//! device holds its own kernel table, so the tests here open their own devices.

mod common;


use ser::ops::autotune::{self, AutotuneMode};
use ser::ops::gemm::{self, GemmDims, GemmKernel, GemmOptions, Precision};

fn tuned_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ser-autotune-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("autotune.json")
}

#[test]
fn tuner_times_candidates_keeps_the_fastest_persists_and_yields_to_a_pin() {
    let gpu = common::device().unwrap();
    let file = tuned_file("persist");
    let _ = std::fs::remove_file(&file);
    autotune::configure(&gpu, AutotuneMode::Fast, None, Some(file.clone()));
    let d = GemmDims { batch: 1, m: 70, n: 45, k: 33, broadcast_b: false };
    let o = GemmOptions { trans_b: true, ..Default::default() };
    let chosen = gemm::kernel_for(&gpu, &d, &o).unwrap();
    let choice = autotune::choice(&gpu, &d, &o).expect("the bucket was tuned");
    // vec4x8 needs K % 4 == 0 (33 is not): it would run as reg4x4, so it is not timed here.
    let want: Vec<String> = autotune::candidates(&gpu, AutotuneMode::Fast, Precision::F32).iter().filter(|k| k.for_dims(&d, &o) == **k).map(|k| k.name()).collect();
    assert!(!want.contains(&"vec4x8".to_string()));
    let got: Vec<String> = choice.candidates.iter().map(|c| c.kernel.clone()).collect();
    assert_eq!(got, want, "every fast candidate is timed");
    assert!(choice.candidates.iter().all(|c| c.ms.is_some_and(|ms| ms > 0.0)), "{:?}", choice.candidates);
    // A candidate timed only in its warm-up ran GIVE_UP_FACTOR times slower than the best
    // fully timed one before it, and so than the best of all.
    let best_timed = choice.candidates.iter().filter(|c| !c.warm_up_only).filter_map(|c| c.ms).fold(f64::INFINITY, f64::min);
    for c in choice.candidates.iter().filter(|c| c.warm_up_only) {
        assert!(c.ms.unwrap() > autotune::GIVE_UP_FACTOR * best_timed, "{c:?} given up on, best {best_timed} ms");
    }
    // The give-up limit stops after the warm-up (any execution takes more than 0 ms); without
    // one, every run is timed.
    let tile = GemmKernel::Tile32;
    assert!(autotune::time_unless_slower(&gpu, tile, &d, &o, 2, Some(0.0)).unwrap().warm_up_only);
    let timed = autotune::time_unless_slower(&gpu, tile, &d, &o, 2, Some(f64::INFINITY)).unwrap();
    assert!(!timed.warm_up_only && timed.ms > 0.0, "{timed:?}");
    // The fastest wins, unless it beats the adapter's default by less than the margin.
    let fastest = choice.candidates.iter().min_by(|a, b| a.ms.unwrap().total_cmp(&b.ms.unwrap())).unwrap();
    let default = autotune::default_kernel(&gpu, Precision::F32).name();
    let default_ms = choice.candidates.iter().find(|c| c.kernel == default).unwrap().ms.unwrap();
    let want_kernel = if fastest.ms.unwrap() * autotune::DEFAULT_MARGIN > default_ms { default } else { fastest.kernel.clone() };
    assert_eq!(choice.kernel, want_kernel, "{:?}", choice.candidates);
    assert_eq!(chosen.name(), choice.kernel);
    assert_eq!(choice.timed_on, [1, 70, 45, 33]);

    // The tuned product is right (the kernel that runs is the tuned one).
    let mut rng = common::Rng::new(common::fresh_seed("autotune"));
    let a = rng.vec(d.m * d.k, -1.0, 1.0);
    let b = rng.vec(d.n * d.k, -1.0, 1.0);
    let (ta, tb) = (gpu.upload_f32(&a, &[d.m, d.k]).unwrap(), gpu.upload_f32(&b, &[d.n, d.k]).unwrap());
    let tc = gpu.upload_f32(&vec![f32::NAN; d.m * d.n], &[d.m, d.n]).unwrap();
    let mut step = gpu.step("test.autotune");
    gemm::gemm(&mut step, &ta, &tb, None, &tc, &o).unwrap();
    step.submit().unwrap();
    common::assert_close("tuned gemm", &gpu.read_f32(&tc).unwrap(), &gemm::reference(&a, &b, None, &[], &d, &o), 1e-5, 1e-5);

    // Persisted under this adapter's key; a new configuration reads it back without timing
    // (a same-bucket shape gets the stored choice, still stamped with the first shape).
    let stored = autotune::stored_choices_in(&file, &autotune::adapter_key(&gpu));
    assert_eq!(stored.get(&autotune::bucket(&d, &o)).map(|c| c.kernel.clone()), Some(choice.kernel.clone()));
    autotune::configure(&gpu, AutotuneMode::Fast, None, Some(file.clone()));
    let same_bucket = GemmDims { m: 100, n: 60, k: 35, ..d };
    assert_eq!(gemm::kernel_for(&gpu, &same_bucket, &o).unwrap(), chosen);
    assert_eq!(autotune::choice(&gpu, &same_bucket, &o).unwrap().timed_on, [1, 70, 45, 33]);
    assert_eq!(autotune::used(&gpu).get(&autotune::bucket(&d, &o)), Some(&chosen.name()));
    // Same powers of two but rows of whole vec4s: its own bucket, tuned on its own shape with
    // the vector kernels among the candidates (a choice made on it must not reach K = 33).
    let aligned = GemmDims { k: 36, ..same_bucket };
    assert_ne!(autotune::bucket(&aligned, &o), autotune::bucket(&d, &o));
    gemm::kernel_for(&gpu, &aligned, &o).unwrap();
    let aligned_choice = autotune::choice(&gpu, &aligned, &o).expect("the aligned bucket was tuned");
    assert_eq!(aligned_choice.timed_on, [1, 100, 60, 36]);
    assert!(aligned_choice.candidates.iter().any(|c| c.kernel == "vec4x8"), "{:?}", aligned_choice.candidates);

    // Off: the adapter class's default, nothing timed or written, stored choices ignored (so
    // an untuned run's numbers never depend on what a tuned run left in the file).
    autotune::configure(&gpu, AutotuneMode::Off, None, Some(file.clone()));
    assert_eq!(gemm::kernel_for(&gpu, &d, &o).unwrap(), autotune::default_kernel(&gpu, Precision::F32));
    let off_file = tuned_file("off");
    let _ = std::fs::remove_file(&off_file);
    autotune::configure(&gpu, AutotuneMode::Off, None, Some(off_file.clone()));
    assert_eq!(gemm::kernel_for(&gpu, &d, &o).unwrap(), autotune::default_kernel(&gpu, Precision::F32));
    assert!(!off_file.exists());

    // A pin wins over tuned choices.
    autotune::configure(&gpu, AutotuneMode::Fast, Some(GemmKernel::Tile32), Some(file.clone()));
    assert_eq!(gemm::kernel_for(&gpu, &d, &o).unwrap(), GemmKernel::Tile32);

    // A multiply the default kernel runs slower than the budget is timed on fewer rows: at a
    // 0 ms budget (every run takes longer) M falls to MIN_TIMED_ROWS plus its remainder mod 64
    // (so its vector alignment with A transposed is kept); a batched one loses batch, not M.
    // Within the budget, or no taller than MIN_TIMED_ROWS, the shape stays whole.
    let min = autotune::MIN_TIMED_ROWS;
    let tall = GemmDims { batch: 1, m: 5 * min + 37, n: 16, k: 12, broadcast_b: false };
    let o_ta = GemmOptions { trans_a: true, ..Default::default() };
    assert_eq!(autotune::timing_dims(&gpu, &tall, &o_ta, f64::INFINITY), tall);
    let cut = autotune::timing_dims(&gpu, &tall, &o_ta, 0.0);
    assert_eq!(cut, GemmDims { m: min + 37, ..tall });
    assert_eq!(cut.vector_aligned(&o_ta), tall.vector_aligned(&o_ta));
    let batched = GemmDims { batch: 64, m: 300, n: 16, k: 12, broadcast_b: true };
    assert_eq!(autotune::timing_dims(&gpu, &batched, &o, 0.0), GemmDims { batch: min.div_ceil(300), ..batched });
    let short = GemmDims { m: min, ..tall };
    assert_eq!(autotune::timing_dims(&gpu, &short, &o_ta, 0.0), short);
}

#[test]
fn bad_tuning_settings_are_clear_errors() {
    let out = common::ser_command().env("SER_AUTOTUNE", "sometimes").args(["predict", "examples/clips"]).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SER_AUTOTUNE=sometimes") && err.contains("off, fast or full"), "{err}");
    let out = common::ser_command().env("SER_GEMM_KERNEL", "fastest").args(["predict", "examples/clips"]).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SER_GEMM_KERNEL=fastest") && err.contains("tile64"), "{err}");
}

/// A damaged tuning file is moved aside with a warning, never silently overwritten; entries
/// this build cannot read (another version's, another adapter's) survive a save.
#[test]
fn a_damaged_or_foreign_tuning_file_loses_nothing() {
    let gpu = common::device().unwrap();
    let file = tuned_file("damaged");
    let aside = file.with_extension("json.corrupt");
    let _ = std::fs::remove_file(&aside);
    std::fs::write(&file, b"{\"adapters\": {\"other gpu\": {\"f32 nn m2^6").unwrap();
    autotune::configure(&gpu, AutotuneMode::Fast, None, Some(file.clone()));
    assert_eq!(std::fs::read(&aside).unwrap(), b"{\"adapters\": {\"other gpu\": {\"f32 nn m2^6", "the damaged file is kept, byte for byte");
    // Another adapter's entry and an entry of a newer format for this adapter are kept when the
    // tuner saves this adapter's new choice.
    let key = autotune::adapter_key(&gpu);
    let foreign = serde_json::json!({"adapters": {"other gpu": {"f32 nn m2^6 n2^6 k2^6": {"kernel": "tile64", "future_field": 1}}, key.clone(): {"f32 nn m2^2 n2^2 k2^2": {"kernel": "tile64", "shape": "a newer ser's"}}}});
    std::fs::write(&file, serde_json::to_vec(&foreign).unwrap()).unwrap();
    autotune::configure(&gpu, AutotuneMode::Fast, None, Some(file.clone()));
    let d = GemmDims { batch: 1, m: 70, n: 45, k: 33, broadcast_b: false };
    gemm::kernel_for(&gpu, &d, &GemmOptions::default()).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["adapters"]["other gpu"], foreign["adapters"]["other gpu"]);
    assert_eq!(saved["adapters"][&key]["f32 nn m2^2 n2^2 k2^2"], foreign["adapters"][&key]["f32 nn m2^2 n2^2 k2^2"]);
    assert!(saved["adapters"][&key].as_object().unwrap().len() >= 2, "the new choice beside the old entry: {saved}");
}

/// A kernel that fails its check is never timed or chosen, even when it is the adapter's
/// default, which otherwise keeps its place unless beaten by a margin.
#[test]
fn a_kernel_that_fails_its_check_is_excluded() {
    let gpu = common::device().unwrap();
    autotune::configure(&gpu, AutotuneMode::Fast, None, None);
    let default = autotune::default_kernel(&gpu, Precision::F32);
    autotune::deny(&gpu, default, "wrong on this test's pretend driver").unwrap();
    let d = GemmDims { batch: 1, m: 90, n: 20, k: 17, broadcast_b: false };
    let o = GemmOptions::default();
    let chosen = gemm::kernel_for(&gpu, &d, &o).unwrap();
    assert_ne!(chosen, default, "the failing default was chosen");
    let choice = autotune::choice(&gpu, &d, &o).unwrap();
    let denied = choice.candidates.iter().find(|c| c.kernel == default.name()).expect("the default was a candidate");
    assert_eq!((denied.ms, denied.error.as_deref()), (None, Some("wrong on this test's pretend driver")));
    assert!(choice.candidates.iter().any(|c| c.ms.is_some()), "{:?}", choice.candidates);
}

/// A clip's prediction does not hang on how many clips share its batch or shard, with the tuner
/// on (the default). The bucket a choice is kept under leaves the rows out, so one (N, K) runs
/// one kernel at every M; and `predict` over three shards, reading the choices the whole run
/// tuned into the machine's tuning file (as every run on a machine does), concatenates to the
/// whole run byte for byte. With M in the bucket, each shard's smaller M tuned anew.
#[test]
fn results_do_not_depend_on_batch_size_under_tuning() {
    for (trans_b, k, n) in [(false, 180, 256), (true, 295, 7), (false, 12, 16)] {
        let o = GemmOptions { trans_b, ..Default::default() };
        let at = |m: usize| autotune::bucket(&GemmDims { batch: 1, m, n, k, broadcast_b: false }, &o);
        for m in [1, 3, 8, 208, 4097] {
            assert_eq!(at(m), at(64), "M = {m} must share the bucket of M = 64");
        }
    }
    let file = tuned_file("shards");
    let _ = std::fs::remove_file(&file);
    let run = |args: &[&str]| {
        let o = common::ser_command()
            .env("SER_AUTOTUNE", "fast")
            .env("SER_AUTOTUNE_FILE", &file)
            .arg("predict")
            .args(args)
            .arg(common::originals_dir())
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let whole = run(&[]);
    assert_eq!(whole.lines().count(), 8);
    let shards: Vec<String> = (0..3).map(|i| run(&["--shard", &format!("{i}/3")])).collect();
    assert_eq!(shards.concat(), whole);
}

/// The kernel table belongs to the device: a second device on the same adapter neither sees the
/// first's pin nor its tuned choices (it reads them only from the tuning file, when it loads
/// one), and a device opened without the runtime's configuration runs the adapter's default
/// kernels and times nothing.
#[test]
fn each_device_holds_its_own_kernel_table() {
    let d = GemmDims { batch: 1, m: 40, n: 24, k: 20, broadcast_b: false };
    let o = GemmOptions::default();
    let pinned = common::device().unwrap();
    let other = common::device().unwrap();
    autotune::configure(&pinned, AutotuneMode::Fast, Some(GemmKernel::Tile32), None);
    autotune::configure(&other, AutotuneMode::Fast, None, None);
    assert_eq!(gemm::kernel_for(&pinned, &d, &o).unwrap(), GemmKernel::Tile32);
    let tuned = gemm::kernel_for(&other, &d, &o).unwrap();
    assert!(autotune::choice(&other, &d, &o).is_some(), "the unpinned device tuned the bucket");
    assert!(autotune::choice(&pinned, &d, &o).is_none(), "the pinned device saw the other's choice");
    assert_eq!(autotune::used(&pinned).get(&autotune::bucket(&d, &o)), Some(&"tile32".to_string()));
    assert_eq!(autotune::used(&other).get(&autotune::bucket(&d, &o)), Some(&tuned.name()));

    let bare = ser::gpu::Gpu::new(&ser::gpu::AdapterSelector::default().with_env().unwrap()).unwrap();
    assert_eq!(gemm::kernel_for(&bare, &d, &o).unwrap(), autotune::default_kernel(&bare, Precision::F32));
    assert!(autotune::choice(&bare, &d, &o).is_none(), "an unconfigured device timed candidates");
}
