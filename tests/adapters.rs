//! Adapter choice and the command line, as a user meets them.

mod common;

use std::process::Command;

fn ser() -> Command {
    common::ser_command()
}

#[test]
fn devices_lists_adapters_as_text_and_json() {
    let out = ser().arg("devices").arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert!(!list.is_empty());
    for a in list {
        for key in ["name", "backend", "device_type", "driver", "limits", "features"] {
            assert!(a.get(key).is_some(), "missing {key} in {a}");
        }
        assert!(a["limits"]["max_compute_workgroups_per_dimension"].as_u64().unwrap() >= 65_535);
    }
    let text = ser().arg("devices").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains(list[0]["name"].as_str().unwrap()));
}

#[test]
fn an_adapter_that_is_not_there_is_a_clear_error() {
    let out = ser().args(["bench", "gemm", "--adapter", "no-such-gpu-anywhere", "--sizes", "8"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no adapter matches") && err.contains("present:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_bad_backend_in_the_environment_is_named() {
    let out = ser()
        .args(["bench", "gemm", "--sizes", "8"])
        .env("WGPU_BACKEND", "glide")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WGPU_BACKEND"));
}

#[test]
fn bench_gemm_reports_every_kernel_and_marks_them_correct() {
    let out = ser().args(["bench", "gemm", "--sizes", "64,20x12x8", "--repeats", "3", "--warmup", "0", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Every kernel the adapter runs plus the tuner's row ("auto", untuned here: it names the
    // kernel that ran); coop8 only where the adapter has cooperative matrices.
    for k in std::iter::once("auto".to_string()).chain(ser::ops::gemm::GemmKernel::ALL.iter().map(|k| k.name())).filter(|k| k != "coop8") {
        assert_eq!(rows.iter().filter(|r| r["kernel"] == k.as_str()).count(), 2, "{k}");
    }
    for r in &rows {
        assert!(r["gflops"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["max_rel_error"].as_f64().unwrap() < ser::bench::CORRECT, "{r}");
        assert_ne!(r["ran"], "auto", "{r}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["devices", "--help"], &["bench", "--help"], &["bench", "gemm", "--help"]] {
        let out = ser().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn no_vulkan_driver_says_what_to_install() {
    // An empty Vulkan driver list: the Vulkan loader finds nothing, as on a machine without a GPU
    // driver. (wgpu's GL backend may still see a software adapter; it is listed, not used.)
    let out = ser()
        .args(["bench", "gemm", "--backend", "vulkan", "--sizes", "8"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mesa-vulkan-drivers"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
