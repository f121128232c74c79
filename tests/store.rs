//! Atomic writes as a crash meets them: a process killed in the middle of writing an output
//! leaves the file it was replacing whole, never a half-written one.

use std::path::Path;
use std::time::{Duration, Instant};

const SIZE: usize = 512 << 20;

/// Not a test of its own: the child the test below starts and kills while it writes.
#[test]
#[ignore = "run by a_write_killed_midway_leaves_the_old_file_whole as its child process"]
fn write_a_large_file_atomically() {
    if let Ok(path) = std::env::var("SER_TEST_ATOMIC_TARGET") {
        // Large enough that the write takes a while (half a GiB): the parent sees it begin.
        let big = vec![0x5au8; SIZE];
        ser::store::write_atomic(Path::new(&path), &big).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_write_killed_midway_leaves_the_old_file_whole() {
    let dir = std::env::temp_dir().join(format!("ser-atomic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("model.safetensors");
    std::fs::write(&target, b"the previous model").unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["write_a_large_file_atomically", "--exact", "--ignored", "--test-threads", "1"])
        .env("SER_TEST_ATOMIC_TARGET", &target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child's temporary file holds part of the data, then kill it mid-write.
    let tmp = dir.join(format!(".model.safetensors.{}.tmp", child.id()));
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < Duration::from_secs(60) {
        seen = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen > 0 && seen < SIZE as u64, "the child was killed mid-write ({seen} bytes written)");
    assert_eq!(std::fs::read(&target).unwrap(), b"the previous model", "the old file is whole");
    // The next write to the same path succeeds beside the left-over temporary, which is not the file.
    ser::store::write_atomic(&target, b"the next model").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"the next model");
    std::fs::remove_dir_all(&dir).unwrap();
}
