//! Every `ser selftest` check, one test each, on the shared test device with a fresh seed
//! (SER_TEST_SEED replays one). These are the GPU suites' kernel checks: the tests and the
//! command share them (src/selftest), so what a user's adapter is checked with is what CI runs
//! at every subgroup width and through GL.

mod common;

use common::{fresh_seed, gpu};
use ser::selftest::{self, Size};

fn run(name: &str) {
    let check = selftest::by_name(name).unwrap_or_else(|| panic!("no check named {name}"));
    let g = &gpu().gpu;
    let r = selftest::run_one(g, &check, fresh_seed(name), Size::Full);
    eprintln!("{}", selftest::table(&g.label(), std::slice::from_ref(&r)));
    assert!(r.passed, "{name} failed on {}: error {:?}, faults {:?}, worst {} ({} of its tolerance)", g.label(), r.error, r.tally.faults, r.tally.worst_at, r.tally.worst_ratio);
    assert!(r.tally.compared > 0 || !r.tally.faults.is_empty() || r.tally.skipped.is_some(), "{name} compared nothing");
    // A check skips only for what the adapter lacks: the f16 checks without shader-f16, where
    // they verify the refusal instead. `ser selftest` prints the skip in its table; CI runs it
    // through GL, where it happens (lavapipe's GL has no shader-f16).
    let may_skip = name.starts_with("gemm.f16") && !g.has_f16();
    assert_eq!(r.tally.skipped.is_some(), may_skip, "{name} on {}: skipped {:?}", g.label(), r.tally.skipped);
    if let Some(why) = &r.tally.skipped {
        eprintln!("skipped {name} on {}: {why}", g.label());
        assert_eq!(r.tally.compared, 0, "{name}: a skipped check compared values");
    } else {
        assert!(r.tally.compared > 0, "{name} compared nothing");
    }
}

macro_rules! checks {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] fn $test() { run($name); })*

        #[test]
        fn every_check_has_a_test() {
            let tested = [$($name),*];
            for c in selftest::checks() {
                assert!(tested.contains(&c.name), "selftest check {} has no test here", c.name);
            }
        }
    };
}

checks! {
    gemm_every_kernel_and_transpose_at_awkward_sizes => "gemm.f32",
    gemm_shared_at_every_row_lanes_on_wide_outputs => "gemm.shared",
    gemm_bf16_within_its_rounding_bound => "gemm.bf16",
    gemm_bf16_exact_on_small_integers => "gemm.bf16-exact",
    gemm_f16_within_its_rounding_bound => "gemm.f16",
    gemm_f16_exact_on_small_integers => "gemm.f16-exact",
    elementwise_ops_with_poisoned_outputs => "elementwise",
    conv1d_forward_and_gradients => "conv1d",
    batch_norm_forward_backward_and_moving_averages => "batch-norm",
    max_pool_forward_and_backward => "max-pool",
    softmax_cross_entropy_loss_and_gradient => "softmax-cross-entropy",
    adam_steps => "adam",
    input_augmentation => "augment",
    rbf_kernel_at_awkward_sizes => "rbf-kernel",
    conjugate_gradients_solve_kernel_ridge => "ridge-solve",
    k_nearest_neighbours_against_brute_force => "knn",
    frame_distribution_embedding_against_its_reference => "embedding",
    voicing_moments_on_either_side_of_the_flag => "voicing-moments",
    forest_growth_and_evaluation_against_references => "forest",
    lstm_through_time_against_references_and_finite_differences => "lstm",
    stft_power_against_a_direct_dft => "stft",
    filterbank_visits_only_each_band => "filterbank",
    frame_descriptors_against_references => "descriptors",
    pitch_against_references => "pitch",
    features_match_librosa_golden_files => "features-vs-librosa",
    built_in_model_gives_its_recorded_probabilities => "built-in-model",
}

#[test]
fn a_wrong_result_fails_its_check() {
    // The tally must fail on a NaN where a number is due, on a value off by more than its
    // tolerance, and on a fault; and pass on values within it.
    let mut t = selftest::Tally::default();
    t.close("ok", &[1.0, 2.0], &[1.0, 2.0 + 1e-7], 1e-6, 0.0);
    assert!(t.passed());
    t.close("nan", &[f32::NAN], &[1.0], 1.0, 1.0);
    assert!(!t.passed() && t.worst_at.contains("nan"), "{t:?}");
    let mut t = selftest::Tally::default();
    t.within("bound", &[1.0, 1.5], &[1.0, 1.0], &[1.0, 0.25]);
    assert!(!t.passed() && t.worst_at.contains("element 1"), "{t:?}");
    let mut t = selftest::Tally::default();
    t.require(false, || "a fault".into());
    assert!(!t.passed());
}
