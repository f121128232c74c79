//! The audio front end as users meet it: real 48 kHz originals, every WAV flavour, FLAC, bad
//! files, and resampling against soxr (librosa's resampler).

mod common;

use common::{clips_dir, originals_dir as sample_dir};
use safetensors::SafeTensors;
use ser::audio::{self, RavdessName};
use std::path::Path;

/// The 16 kHz FLAC copies of the originals (tests/clips/16k) with their manifest rows: (file,
/// the sample count the manifest records).
fn flac_copies() -> Vec<(std::path::PathBuf, usize)> {
    let root = clips_dir().join("16k");
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).unwrap();
    let rows: Vec<_> = manifest.lines().skip(1).map(|line| {
        let cols: Vec<&str> = line.split('\t').collect();
        (root.join(cols[0]), cols[7].parse::<usize>().unwrap())
    }).collect();
    assert_eq!(rows.len(), 8);
    rows
}

#[test]
fn decodes_the_48k_originals_including_stereo_and_extra_chunks() {
    let files = audio::find_audio_files(&sample_dir()).unwrap();
    assert_eq!(files.len(), 8);
    for f in &files {
        let a = audio::decode_file(f).unwrap();
        assert_eq!(a.sample_rate, 48_000);
        assert!(a.samples.len() > 100_000, "{}", f.display());
        assert!(a.samples.iter().all(|s| s.abs() <= 1.0));
        RavdessName::parse(f.file_name().unwrap().to_str().unwrap()).unwrap();
    }
    // The stereo original mixes down to the mean of its channels.
    let stereo = sample_dir().join("03-01-08-01-02-02-01.wav");
    let mut r = hound::WavReader::open(&stereo).unwrap();
    assert_eq!(r.spec().channels, 2);
    let raw: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    let mono = audio::decode_file(&stereo).unwrap().samples;
    for (i, m) in mono.iter().enumerate().step_by(997) {
        let want = (raw[2 * i] as f32 / 32768.0 + raw[2 * i + 1] as f32 / 32768.0) / 2.0;
        assert!((m - want).abs() < 1e-7);
    }
}

/// Writes a WAV of the given format into memory.
fn wav_bytes(spec: hound::WavSpec, write: impl FnOnce(&mut hound::WavWriter<&mut std::io::Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        write(&mut w);
        w.finalize().unwrap();
    }
    cursor.into_inner()
}

#[test]
fn every_wav_bit_depth_scales_like_soundfile() {
    let wave: Vec<f64> = (0..64).map(|i| 0.9 * ((i as f64) * 0.3).sin()).collect();
    for (bits, float) in [(8u16, false), (16, false), (24, false), (32, false), (32, true)] {
        for channels in [1u16, 2] {
            let spec = hound::WavSpec {
                channels,
                sample_rate: 22_050,
                bits_per_sample: bits,
                sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
            };
            let full = (1i64 << (bits - 1)) as f64;
            let bytes = wav_bytes(spec, |w| {
                for &v in &wave {
                    for ch in 0..channels {
                        // The second channel is negated: the mixdown of a stereo file is zero.
                        let v = if ch == 1 { -v } else { v };
                        if float {
                            w.write_sample(v as f32).unwrap();
                        } else {
                            w.write_sample((v * full).round() as i32).unwrap();
                        }
                    }
                }
            });
            let a = audio::decode_bytes(&bytes).unwrap();
            assert_eq!((a.sample_rate, a.samples.len()), (22_050, wave.len()));
            for (got, want) in a.samples.iter().zip(&wave) {
                let want = if channels == 2 { 0.0 } else { *want };
                // One quantisation step of the format.
                assert!((*got as f64 - want).abs() <= 1.0 / full + 1e-7, "{bits}-bit float={float} ch={channels}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn flac_decodes_to_the_same_samples_as_its_wav() {
    // The 16 kHz training copy is FLAC; its README says it decodes bit for bit to the WAV that
    // sox made from the 48 kHz original. Check the FLAC against the sample count in the manifest.
    for (file, frames) in flac_copies() {
        let a = audio::decode_file(&file).unwrap();
        assert_eq!(a.sample_rate, 16_000);
        assert_eq!(a.samples.len(), frames, "{}", file.display());
        // 16-bit content: every sample is a multiple of 1/32768.
        assert!(a.samples.iter().all(|s| (s * 32768.0).fract() == 0.0));
    }
}

#[test]
fn bad_files_are_clear_errors_naming_the_problem() {
    let ok = wav_bytes(hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int }, |w| {
        for i in 0..1000 {
            w.write_sample((i % 100) as i16).unwrap();
        }
    });
    let empty_wav = wav_bytes(hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int }, |_| {});
    let nan_wav = wav_bytes(hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 32, sample_format: hound::SampleFormat::Float }, |w| {
        w.write_sample(0.5f32).unwrap();
        w.write_sample(f32::NAN).unwrap();
    });
    let inf_wav = wav_bytes(hound::WavSpec { channels: 1, sample_rate: 16_000, bits_per_sample: 32, sample_format: hound::SampleFormat::Float }, |w| {
        w.write_sample(f32::INFINITY).unwrap();
    });
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "empty"),
        ("not audio", b"hello world, not a wav".to_vec(), "not a WAV"),
        ("truncated WAV", ok[..ok.len() / 2].to_vec(), "WAV"),
        ("header only", ok[..44].to_vec(), "truncated"),
        ("zero samples", empty_wav, "no audio samples"),
        ("NaN sample", nan_wav, "sample 1 is NaN"),
        ("infinite sample", inf_wav, "sample 0 is inf"),
        ("truncated FLAC", b"fLaC\x00\x00".to_vec(), "FLAC"),
    ];
    for (what, bytes, needle) in cases {
        match audio::decode_bytes(&bytes) {
            Ok(a) => panic!("{what}: decoded {} samples", a.samples.len()),
            Err(e) => assert!(format!("{e:#}").contains(needle), "{what}: {e:#}"),
        }
    }
    // One sample is valid audio.
    let one = wav_bytes(hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int }, |w| {
        w.write_sample(1000i16).unwrap();
    });
    assert_eq!(audio::decode_bytes(&one).unwrap().samples.len(), 1);
    // Errors from files name the file.
    let dir = std::env::temp_dir().join(format!("ser-audio-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("03-01-01-01-01-01-01.wav");
    std::fs::write(&bad, b"RIFF....WAVEjunk").unwrap();
    let e = format!("{:#}", audio::decode_file(&bad).unwrap_err());
    assert!(e.contains("03-01-01-01-01-01-01.wav"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resampling_48k_to_16k_matches_soxr_hq() {
    let golden = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/resample.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&golden).unwrap();
    let want: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor("soxr_hq").unwrap().data());
    let a = audio::decode_file(&sample_dir().join("03-01-01-01-01-01-01.wav")).unwrap();
    let got = audio::resample(&a.samples, 48_000, 16_000).unwrap();
    assert_eq!(got.len(), want.len(), "librosa's length is ceil(n * 16000 / 48000)");
    // Two different filter designs with the same specification (flat to 91% of the new Nyquist,
    // stopped at 100%): compare the difference's energy to the signal's. Measured 77-82 dB; half
    // a sample of misalignment would bring it down to ~19 dB, a softer filter to ~40 dB.
    let signal: f64 = want.iter().map(|v| (*v as f64).powi(2)).sum();
    let residual: f64 = got.iter().zip(&want).map(|(g, w)| (*g as f64 - *w as f64).powi(2)).sum();
    let snr_db = 10.0 * (signal / residual).log10();
    let peak_err = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    eprintln!("48000 -> 16000 Hz: SNR {snr_db:.1} dB against soxr_hq, peak error {peak_err:.2e}");
    assert!(snr_db > 70.0, "resampled signal differs from soxr's: SNR {snr_db:.1} dB");
    for rate in [44_100u32, 22_050, 8_000] {
        let input: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor(&format!("input_{rate}")).unwrap().data());
        let want: Vec<f32> = bytemuck::pod_collect_to_vec(st.tensor(&format!("soxr_hq_{rate}")).unwrap().data());
        let got = audio::resample(&input, rate, 16_000).unwrap();
        assert_eq!(got.len(), want.len(), "{rate} Hz");
        let signal: f64 = want.iter().map(|v| (*v as f64).powi(2)).sum();
        let residual: f64 = got.iter().zip(&want).map(|(g, w)| (*g as f64 - *w as f64).powi(2)).sum();
        let snr_db = 10.0 * (signal / residual).log10();
        eprintln!("{rate} -> 16000 Hz: SNR {snr_db:.1} dB against soxr_hq");
        assert!(snr_db > 70.0, "{rate} Hz: SNR {snr_db:.1} dB");
    }
}

#[test]
fn declared_sizes_and_rates_are_bounded_before_anything_is_allocated() {
    let spec = |rate| hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    // A 1 Hz header would make resampling to 16 kHz allocate 16,000 x the samples (12.8 GB
    // for the file in issue 12); it is refused by its rate.
    let one_hz = wav_bytes(spec(1), |w| (0..100).for_each(|i| w.write_sample(i as i16).unwrap()));
    let e = format!("{:#}", audio::decode_bytes(&one_hz).unwrap_err());
    assert!(e.contains("sample rate 1 Hz") && e.contains("1000-768000"), "{e}");
    // A data chunk claiming 4 GB in a 1 kB file: a clear error, no 4 GB reservation.
    let mut lying = wav_bytes(spec(16_000), |w| (0..500).for_each(|i| w.write_sample(i as i16).unwrap()));
    let data = lying.windows(4).position(|w| w == b"data").unwrap();
    lying[data + 4..data + 8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    match audio::decode_bytes(&lying) {
        Ok(a) => assert_eq!(a.samples.len(), 500, "only what the file holds"),
        Err(e) => assert!(format!("{e:#}").contains("WAV"), "{e:#}"),
    }
}

#[cfg(unix)]
#[test]
fn fifos_and_link_loops_neither_hang_nor_repeat_clips() {
    let dir = std::env::temp_dir().join(format!("ser-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let good = sample_dir().join("03-01-01-01-01-01-01.wav");
    std::fs::copy(&good, dir.join("sub/03-01-01-01-01-01-01.wav")).unwrap();
    // A link loop (sub/again -> ..) and a second link to the same clip.
    std::os::unix::fs::symlink("..", dir.join("sub/again")).unwrap();
    std::os::unix::fs::symlink("sub/03-01-01-01-01-01-01.wav", dir.join("alias.wav")).unwrap();
    let fifo = dir.join("03-01-02-01-01-01-01.wav");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let files = audio::find_audio_files(&dir).unwrap();
    // The real clip once (through whichever path sorts first) and the FIFO, listed so that
    // decoding can refuse it by name.
    assert_eq!(files.len(), 2, "{files:?}");
    let e = format!("{:#}", audio::decode_file(&fifo).unwrap_err());
    assert!(e.contains("not a regular file") && e.contains("03-01-02-01-01-01-01.wav"), "{e}");
    assert!(files.iter().any(|f| audio::decode_file(f).is_ok()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A RIFF/WAVE file from raw chunks (id, body), each padded to an even size unless `pad` is false.
fn riff(chunks: &[(&[u8; 4], Vec<u8>)], pad: bool) -> Vec<u8> {
    let mut body = b"WAVE".to_vec();
    for (id, data) in chunks {
        body.extend_from_slice(*id);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if pad && data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

fn fmt_chunk(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut f = Vec::new();
    for v in [tag.to_le_bytes().to_vec(), channels.to_le_bytes().to_vec(), rate.to_le_bytes().to_vec(), (rate * block as u32).to_le_bytes().to_vec(), block.to_le_bytes().to_vec(), bits.to_le_bytes().to_vec()] {
        f.extend(v);
    }
    f
}

#[test]
fn valid_wavs_libsndfile_reads_are_read() {
    let pcm: Vec<u8> = [1000i16, -2000, 3000, -4000].iter().flat_map(|s| s.to_le_bytes()).collect();
    let want = [1000.0 / 32768.0, -2000.0 / 32768.0, 3000.0 / 32768.0, -4000.0 / 32768.0];
    // An odd-sized chunk before the data, correctly padded (was refused), and the same without
    // its pad byte (malformed, tolerated as libsndfile does).
    for pad in [true, false] {
        let bytes = riff(&[(b"fmt ", fmt_chunk(1, 1, 16_000, 16)), (b"LIST", b"odd".to_vec()), (b"data", pcm.clone())], pad);
        let a = audio::decode_bytes(&bytes).unwrap_or_else(|e| panic!("pad {pad}: {e:#}"));
        assert_eq!(a.samples, want, "pad {pad}");
    }
    // A streaming writer's data size (0xFFFFFFFF): the data runs to the end of the file.
    let mut streaming = riff(&[(b"fmt ", fmt_chunk(1, 1, 16_000, 16)), (b"data", pcm.clone())], true);
    let at = streaming.len() - pcm.len() - 4;
    streaming[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(audio::decode_bytes(&streaming).unwrap().samples, want);
    // 64-bit float, stereo: mixed down to the mean.
    let f64s: Vec<u8> = [0.5f64, -0.25, 0.125, 0.375].iter().flat_map(|s| s.to_le_bytes()).collect();
    let a = audio::decode_bytes(&riff(&[(b"fmt ", fmt_chunk(3, 2, 44_100, 64)), (b"data", f64s)], true)).unwrap();
    assert_eq!((a.samples, a.sample_rate), (vec![0.125, 0.25], 44_100));
    // WAVE_FORMAT_EXTENSIBLE naming integer PCM in its sub-format.
    let mut ext = fmt_chunk(0xFFFE, 1, 16_000, 16);
    ext.extend_from_slice(&22u16.to_le_bytes());
    ext.extend_from_slice(&16u16.to_le_bytes());
    ext.extend_from_slice(&0u32.to_le_bytes());
    ext.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
    assert_eq!(audio::decode_bytes(&riff(&[(b"fmt ", ext), (b"data", pcm.clone())], true)).unwrap().samples, want);
    // Float samples 60 dB past full scale are not audio (they made NaN features before).
    let loud: Vec<u8> = [0.5f32, 1e20].iter().flat_map(|s| s.to_le_bytes()).collect();
    let e = format!("{:#}", audio::decode_bytes(&riff(&[(b"fmt ", fmt_chunk(3, 1, 16_000, 32)), (b"data", loud)], true)).unwrap_err());
    assert!(e.contains("sample 1 is 1e20") && e.contains("beyond any audio level"), "{e}");
    // A data chunk claiming more than is there is a cut file: an error, not a silent guess.
    let mut cut = riff(&[(b"fmt ", fmt_chunk(1, 1, 16_000, 16)), (b"data", pcm)], true);
    cut.truncate(cut.len() - 3);
    assert!(format!("{:#}", audio::decode_bytes(&cut).unwrap_err()).contains("declares 8 bytes, 5 are present"));
}

#[test]
fn a_damaged_flac_frame_is_an_error_not_plausible_audio() {
    let good = std::fs::read(&flac_copies()[0].0).unwrap();
    assert_eq!(audio::decode_bytes(&good).unwrap().integrity, audio::Integrity::Verified);
    // Flip bits at several places in the audio frames (past the header and metadata): each
    // damaged file is refused as corrupt FLAC, whether the frame no longer parses (its CRC) or
    // decodes to other samples (the MD5).
    for frac in [0.3, 0.5, 0.7, 0.9] {
        let mut bad = good.clone();
        let at = (bad.len() as f64 * frac) as usize;
        bad[at] ^= 0x5a;
        bad[at + 1] ^= 0x21;
        let e = match audio::decode_bytes(&bad) {
            Ok(a) => panic!("at {frac}: a damaged copy decoded to {} samples", a.samples.len()),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains("FLAC"), "at {frac}: {e}");
    }
    // The MD5 check itself: the same frames under another signature (STREAMINFO's MD5 is bytes
    // 26..42: "fLaC", a block header, 18 bytes of stream parameters) decode to samples that do not
    // match it.
    assert_eq!(&good[..4], b"fLaC");
    let mut other_signature = good.clone();
    other_signature[30] ^= 0x01;
    let e = format!("{:#}", audio::decode_bytes(&other_signature).unwrap_err());
    assert!(e.contains("does not match the stream's MD5 signature"), "{e}");
    // A stream written without a signature (all zero) decodes, and says it was not verified.
    let mut unsigned = good.clone();
    unsigned[26..42].fill(0);
    let a = audio::decode_bytes(&unsigned).unwrap();
    assert_eq!((a.integrity, a.samples), (audio::Integrity::Unverifiable, audio::decode_bytes(&good).unwrap().samples));
}
